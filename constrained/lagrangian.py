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

from collections.abc import Mapping
from typing import NamedTuple, Optional

import torch

from .binding import Binding
from .protocols import Formulation, Observation


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

    Raises:
        ValueError: a multiplier whose lambda does not have its violations' shape.
    """
    values = {}
    for name, entry in priced.items():
        multiplier = entry.binding.multiplier
        if multiplier is None:
            weight = formulation.fixed_weight
            assert weight is not None, "a formulation without multipliers gives a fixed weight"
            values[name] = torch.full((1,), weight, device=entry.violation.device)
            continue
        value = multiplier.value(entry.features)
        if value.dim() == 0:
            value = value.unsqueeze(0)
        if value.shape != entry.violation.shape:
            raise ValueError(f"constraint {name!r}: its multiplier gives lambda of shape {tuple(value.shape)} for "
                             f"violations of shape {tuple(entry.violation.shape)}; they must match")
        values[name] = value
    return values


def entry_scale(binding: Binding, entries: int, dual: bool) -> float:
    """Terms are sums over entries; per-sample constraints read them as expectations over the batch (1/B).
    The dual term of a per-index multiplier is not averaged: each entry owns one sample."""
    summed = binding.summed or (dual and binding.per_index)
    return 1.0 if summed else 1.0 / entries


def primal_lagrangian(loss: torch.Tensor, priced: Mapping[str, Priced], values: Mapping[str, torch.Tensor],
                      formulation: Formulation) -> torch.Tensor:
    """f + the constraints' primal terms (multipliers held fixed), scalar."""
    lagrangian = loss
    for name, entry in priced.items():
        binding = entry.binding
        term = formulation.primal_term(None if binding.multiplier is None else values[name], entry.violation,
                                       binding.equality)
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
        scale = entry_scale(binding, entry.violation.shape[0], dual=True)
        if not binding.per_index:
            scale *= weight
        if total is None:
            total = term * scale if scale != 1.0 else term
        else:
            total = torch.add(total, term, alpha=scale)
    return total
