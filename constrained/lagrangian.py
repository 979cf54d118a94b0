"""The Lagrangian's two halves as pure functions over priced observations.

An observation is *priced* once per evaluation (`price`): what the primal term reads (the violations, which
carry the model's gradient), what the dual term reads (the strict violations when a proxy was used), and the
multiplier's input. Each multiplier is then evaluated once (`multiplier_values`) and its value feeds both
terms:

- `primal_lagrangian`: f + sum_c scale_c * primal_term_c, multipliers held fixed (minimised by the model);
- `dual_lagrangian`: weight * sum_c scale_c * dual_term_c, violations held fixed (ascended by the duals).

Terms are sums over an observation's n entries; `entry_scale` turns them into expectations.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import torch

from .binding import Binding
from .protocols import Formulation, MultiplierKind, Observation
from .relaxation import relaxation_term


class Priced(NamedTuple):
    """One evaluation of one constraint as the Lagrangian terms read it."""

    binding: Binding
    violation: torch.Tensor  #: [n] the primal term's violations (carry the model's gradient)
    dual_violation: torch.Tensor  #: [n] what the dual step ascends on (the strict violation, if any)
    features: Optional[torch.Tensor]  #: the multiplier's input ([n, F] features, [n] indices) or None


def price(binding: Binding, observation: Observation) -> Priced:
    """What the terms read of `observation`: an averaging multiplier sees the mean violation ([1]); a strict
    violation (proxy constraints) goes to the dual side only."""
    g, strict = observation.violation, observation.strict_violation
    if binding.averages:
        g = g.mean().unsqueeze(0)
        return Priced(binding, g, g if strict is None else strict.mean().unsqueeze(0), None)
    features = None if binding.multiplier is None else binding.multiplier.features_of(observation)
    return Priced(binding, g, g if strict is None else strict, features)


def multiplier_values(priced: Mapping[str, Priced], formulation: Formulation) -> dict[str, torch.Tensor]:
    """{name: lambda [n]} of this evaluation; a fixed weight as [1] (for reports) where there is no multiplier.

    A user's multiplier is checked at this boundary (`check_multiplier_value`): a tensor, floating point, of its
    violations' shape, connected to its parameters while gradients are on, and for an inequality never
    negative (read once per multiplier, at its first evaluation: one transfer in a whole training).

    Raises:
        TypeError, ValueError: a multiplier whose lambda breaks the protocol, naming its class and `value`.
    """
    values = {}
    for name, entry in priced.items():
        multiplier = entry.binding.multiplier
        if multiplier is None:
            weight = formulation.fixed_weight
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise TypeError(f"constraint {name!r}: {type(formulation).__name__}.fixed_weight is {weight!r}; a "
                                "formulation without multipliers (needs_multiplier False) must give a number")
            values[name] = torch.full((1,), weight, device=entry.violation.device)
            continue
        value = check_multiplier_value(multiplier.value(entry.features), multiplier, entry, name)
        values[name] = value if entry.binding.relax is None else entry.binding.relax.price(value)
    return values


#: multipliers whose sign was read once (`check_multiplier_value`)
_SIGN_READ: "weakref.WeakSet[Any]" = weakref.WeakSet()


def check_multiplier_value(value: Any, multiplier: MultiplierKind, entry: Priced, name: str) -> torch.Tensor:
    """`value`, what `entry`'s multiplier returned, checked against `MultiplierKind.value`'s contract; a scalar
    becomes [1]."""
    where = f"constraint {name!r}: {type(multiplier).__name__}.value()"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where} returned a {type(value).__name__}; it must return a floating-point torch.Tensor of "
                        "lambdas, [n] or [1], differentiable in the multiplier's parameters")
    if not value.is_floating_point():
        raise TypeError(f"{where} returned a {value.dtype} tensor; lambda must be floating point (its dual gradient "
                        "flows through it)")
    lam: torch.Tensor = value.unsqueeze(0) if value.dim() == 0 else value
    if lam.shape != entry.violation.shape:
        raise ValueError(f"{where} gives lambda of shape {tuple(lam.shape)} for violations of shape "
                         f"{tuple(entry.violation.shape)}; they must match")
    trainable = any(p.requires_grad for p in multiplier.parameters())
    if torch.is_grad_enabled() and trainable and not lam.requires_grad:
        raise ValueError(f"{where} returned a lambda detached from the multiplier's parameters (no gradient): the "
                         "dual step could never move it; return the tensor computed from the parameters")
    if not entry.binding.equality and multiplier not in _SIGN_READ:
        _SIGN_READ.add(multiplier)
        if bool((lam.detach() < 0).any()):  # once per multiplier: a negative price rewards violating the bound
            raise ValueError(f"{where} returned a negative lambda ({float(lam.detach().min()):.4g}) for an inequality "
                             f"constraint (free_sign={multiplier.free_sign}): a bound priced below 0 acts as a reward; "
                             "keep lambda >= 0 (a softplus or relu link, or a clamp in project_)")
    return lam


def check_term(term: Any, formulation: Any, member: str, name: str, violation: torch.Tensor) -> torch.Tensor:
    """A formulation's primal or dual term, checked against `Formulation`'s contract: a floating-point scalar
    tensor, connected to the violations' gradient where they carry one (primal term)."""
    where = f"constraint {name!r}: {type(formulation).__name__}.{member}()"
    if not isinstance(term, torch.Tensor):
        raise TypeError(f"{where} returned a {type(term).__name__}; it must return a scalar torch.Tensor (a float "
                        "carries no gradient, so the constraint would not act)")
    if term.dim() != 0 or not term.is_floating_point():
        raise ValueError(f"{where} returned a {term.dtype} tensor of shape {tuple(term.shape)}; it must return a "
                         "floating-point scalar (shape ()): the sum over the observation's entries")
    if member == "primal_term" and violation.requires_grad and not term.requires_grad:
        raise ValueError(f"{where} returned a term detached from the violations: the model would train as if "
                         "unconstrained; compute it from the violation tensor it is given")
    return term


def entry_scale(binding: Binding, entries: int, dual: bool) -> float:
    """Terms are sums over entries; per-sample constraints read them as expectations over the batch (1/B).
    The dual term of a per-index multiplier is not averaged: each entry owns one sample."""
    summed = binding.summed or (dual and binding.per_index)
    return 1.0 if summed else 1.0 / entries


def primal_lagrangian(loss: torch.Tensor, priced: Mapping[str, Priced], values: Mapping[str, torch.Tensor],
                      formulation: Formulation) -> torch.Tensor:
    """f + the constraints' primal terms (multipliers held fixed), scalar."""
    lagrangian = loss
    relaxed_primal = getattr(formulation, "relaxed_primal", False)
    for name, entry in priced.items():
        binding = entry.binding
        violation = entry.violation
        if relaxed_primal and binding.relax is not None:  # a penalty on g - u*(lambda), u* held fixed
            violation = violation - binding.relax.relaxation(values[name].detach(), entry.dual_violation.detach())
        term = check_term(formulation.primal_term(None if binding.multiplier is None else values[name], violation,
                                                  binding.equality), formulation, "primal_term", name, violation)
        scale = entry_scale(binding, entry.violation.shape[0], dual=False)
        lagrangian = torch.add(lagrangian, term, alpha=scale) if scale != 1.0 else lagrangian + term  # one op
    return lagrangian


def dual_lagrangian(priced: Mapping[str, Priced], values: Mapping[str, torch.Tensor], formulation: Formulation,
                    weight: float) -> Optional[torch.Tensor]:
    """weight x the dual Lagrangian (to ascend), scalar; None when no constraint has a dual term.

    Args:
        weight: the micro-batch's share (1 / micro-batches); a per-index entry owns its sample's violation and
            is not weighted.
    """
    total: Optional[torch.Tensor] = None
    for name, entry in priced.items():
        binding = entry.binding
        if binding.multiplier is None:
            continue
        term = formulation.dual_term(values[name], entry.dual_violation)
        if term is None:
            continue
        term = check_term(term, formulation, "dual_term", name, entry.dual_violation)
        if binding.relax is not None:  # resilient: lambda g - h*(lambda), ascending on g - u*(lambda)
            term = term + relaxation_term(binding.relax, values[name], entry.dual_violation).sum()
        scale = entry_scale(binding, entry.violation.shape[0], dual=True)
        if not binding.per_index:
            scale *= weight
        if total is None:
            total = term * scale if scale != 1.0 else term
        else:
            total = torch.add(total, term, alpha=scale)
    return total
