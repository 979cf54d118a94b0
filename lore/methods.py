"""The LORE family of methods, each a small specification on `constrained`.

A `Method` says what PGD attacks and the encoder minimises (`robust_loss`),
and optionally which per-sample constraint keeps clean outputs near the
frozen reference, with which multiplier and formulation:

=============  ===================================  ==============================================
method         robust loss (maximised by PGD)       constraint on clean x
=============  ===================================  ==============================================
FARE (Eq. 2)   ||phi(x+delta) - phi_0(x)||^2        none
naive (Eq. 3)  as FARE                              lambda * ||phi(x) - phi_0(x)||^2, fixed lambda
LORE (Eq. 7)   as FARE                              ||phi(x) - phi_0(x)||^2 <= rho ||phi_0(x)||^2, lambda_w(phi_0(x))
TeCoA (Eq. 25) CE(zero-shot logits(phi(x+delta)), y)  none
TeCoA+l2       as TeCoA                             as LORE
TeCoA+KL       as TeCoA                             KL(p_0 || p_theta) <= rho H(p_0) (App. J.7)
=============  ===================================  ==============================================

A seventh method is one more `Method(...)` in user code, and `lore.registry.register_method` puts it on the
command line; see docs/lore.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch

from constrained import (AugmentedLagrangian, Constraint, EntropyMargin, FixedMargin, FixedPenalty, Formulation,
                         Lagrangian, MultiplierKind, NormMargin, RelaxationCost, kl_div, sq_l2)

from .dual import DualAscent, dual_factory, relaxation
from .objectives import Batch, embedding, embedding_distance, zero_shot_cross_entropy, zero_shot_logits
from .plugins import resolve
from .presets import DEFAULT_PRESET, DualSettings, dual_preset
from .registry import method_entry
from .vocabulary import DualKind, DualSignal, check_choice


@dataclass(frozen=True)
class Method:
    """A robust fine-tuning method as a specification.

    Args:
        name: short name used in logs and files.
        robust_loss: (embeddings of x + delta [B, D], Batch) -> [B]; PGD maximises it,
            the encoder minimises its mean.
        constraint: optional per-sample constraint on clean inputs, comparing
            `view(phi(x))` with `view(phi_0(x))`.
        view: maps embeddings to what the constraint compares (embeddings or logits).
        multiplier: factory embed_dim -> multiplier, fed with phi_0(x) as features;
            None when the formulation has no dual variable.
        formulation: how the constraint enters the objective.
        supervised: whether the method needs labels and a zero-shot head.
        dual_ascent: how the multiplier ascends (None: no multiplier, or the stepper's own default).
        authors_updates: encoder updates per adversarial batch in the method's authors' recipe (FARE, TeCoA: 1),
            what `RobustStep` takes unless given `primal_steps`; None: K (`lore.presets.PAPER`'s 5).
    """

    name: str
    robust_loss: Callable[[torch.Tensor, Batch], torch.Tensor]
    constraint: Optional[Constraint] = None
    view: Callable[[torch.Tensor, Batch], torch.Tensor] = embedding
    multiplier: Optional[Callable[[int], MultiplierKind]] = None
    formulation: Formulation = Lagrangian()
    supervised: bool = False
    dual_ascent: Optional[DualAscent] = None
    authors_updates: Optional[int] = None


def fare() -> Method:
    """FARE (Schlarmann et al. 2024; paper Eq. 2): unsupervised, unconstrained."""
    return Method("fare", embedding_distance, authors_updates=method_entry("fare").authors_updates)


def naive(weight: float = 1.0) -> Method:
    """Naive regularization (paper Eq. 3): FARE + weight * ||phi(x) - phi_0(x)||^2, weight fixed."""
    clean = Constraint(d=sq_l2, margin=FixedMargin(0.0), name="clean")
    return Method("naive", embedding_distance, clean, formulation=FixedPenalty(weight))


def _proximity(rho: float, adaptive_margin: bool, violation_rate: Optional[float] = None,
               relax: Optional[RelaxationCost] = None) -> Constraint:
    margin = NormMargin(rho) if adaptive_margin else FixedMargin(rho)
    return Constraint(d=sq_l2, margin=margin, name="clean", violation_rate=violation_rate, relax=relax)


def _dual_settings(preset: str, dual: Union[DualKind, DualSettings], **given: Any) -> DualSettings:
    """The method's dual, whole: `dual` itself when it is a `DualSettings` (then nothing else may be given), else
    `preset`'s values with kind `dual` and the values given that are not None."""
    if isinstance(dual, DualSettings):
        extra = sorted(name for name, value in given.items() if value is not None)
        if extra or preset != DEFAULT_PRESET:
            raise ValueError(f"dual is a whole DualSettings; leave out {extra or ['preset']}, or pass them without it")
        return dual
    return DualSettings.from_preset(preset, kind=dual, **given)


def lore(rho: float = 0.1, *, preset: str = DEFAULT_PRESET, dual: Union[DualKind, DualSettings] = "network",
         hidden: Optional[int] = None, init: Optional[float] = None, adaptive_margin: bool = True,
         features: Optional[str] = None, link: Optional[str] = None, penalty: float = 0.0,
         dual_signal: Optional[DualSignal] = None, violation_rate: Optional[float] = None,
         dual_optimizer: Optional[str] = None, dual_lr: Optional[float] = None, dual_beta1: Optional[float] = None,
         dual_beta2: Optional[float] = None, relax: Union[str, RelaxationCost, None] = None, relax_price: float = 1.0) -> Method:
    """LORE (paper Eq. 7, Algorithm 1).

    Every dual setting left None takes the value of `preset` (`lore.presets`): "paper" (default) is
    Algorithm 1 with App. C's values (ascent on the violations, raw phi_0(x), softplus, SGD at 5e-4, hidden
    512); "embedded" is the same ascent from lambda = 0 at 3e-2 on standardized phi_0(x) (projected link, hidden
    32), measured on the embedded digits model. With `RobustStep`'s default K = 5, `lore.lore()` is the
    paper's LORE.

    Args:
        rho: margin scale (paper: 0.1; 0.01 CIFAR-10, 0.05 DINOv2-S, 0.15-0.2 elsewhere).
        preset: the dual preset the other dual settings default to.
        dual: the multiplier's parameterisation, "network" (paper), "linear" or "scalar" (App. G); or the whole
            dual as one `lore.presets.DualSettings` (what `lore train` passes), and then none of hidden, init,
            features, link or dual_optimizer to dual_beta2.
        hidden: hidden width of the dual network.
        init: initial lambda.
        adaptive_margin: rho ||phi_0(x)||^2 (paper) if True, the fixed tolerance rho otherwise (Table 13).
        features: what the dual network sees of phi_0(x): "raw" (the paper's), "standardized" or "unit-rms";
            see `lore.dual.dual_factory`.
        link: "softplus" (the paper's) or "projected"; see `lore.dual.dual_factory`.
        penalty: c > 0 adds (c/2) relu(g(x))^2 per sample to the primal (augmented Lagrangian): each
            violating sample is pushed back on its own, whatever lambda_w(x); 0 is the paper's Lagrangian.
        dual_signal: what the dual ascends on: "violation": the violations themselves (the paper's); "rate":
            1[outside the margin] - violation_rate (`Constraint.violation_rate`), so lambda_w(x) rises where more
            than that share of the samples are outside and falls to 0 where fewer are.
        violation_rate: alpha in [0, 1), the tolerated share outside the margin per neighbourhood ("rate").
        dual_optimizer: the dual ascent's optimizer, "sgd" or "adam" (`DualAscent`).
        dual_lr: the dual learning rate eta.
        dual_beta1: Adam's beta1 (the "adam" dual only).
        dual_beta2: Adam's beta2 (the "adam" dual only).
        relax: a resilient margin (`relaxation`): each sample's bound may relax by u(x) >= 0 at a price,
            u(x) = (h')^{-1}(lambda(x)); "quadratic", "linear", a `constrained.RelaxationCost`, or None
            (default): the paper's hard margin.
        relax_price: alpha of "quadratic", beta of "linear" (> 0).
    """
    settings = _dual_settings(preset, dual, hidden=hidden, init=init, features=features, link=link,
                              optimizer=dual_optimizer, lr=dual_lr, beta1=dual_beta1, beta2=dual_beta2)
    defaults = dual_preset(preset)
    signal = check_choice(defaults.dual_signal if dual_signal is None else dual_signal, DualSignal, "dual_signal")
    rate = (violation_rate if violation_rate is not None else defaults.violation_rate) if signal == "rate" else None
    formulation = AugmentedLagrangian(penalty) if penalty else Lagrangian()
    constraint = _proximity(rho, adaptive_margin, rate, relaxation(relax, relax_price))
    return Method("lore", embedding_distance, constraint, formulation=formulation, multiplier=dual_factory(settings),
                  dual_ascent=DualAscent.of(settings))


def tecoa() -> Method:
    """TeCoA (Mao et al. 2023; paper Eq. 25): supervised adversarial CE on zero-shot logits."""
    return Method("tecoa", zero_shot_cross_entropy, supervised=True,
                  authors_updates=method_entry("tecoa").authors_updates)


def tecoa_l2(rho: float = 0.1, *, preset: str = DEFAULT_PRESET, dual: Union[DualKind, DualSettings] = "network",
             hidden: Optional[int] = None, init: Optional[float] = None, features: Optional[str] = None,
             link: Optional[str] = None, dual_optimizer: Optional[str] = None,
             dual_lr: Optional[float] = None, dual_beta1: Optional[float] = None,
             dual_beta2: Optional[float] = None, relax: Union[str, RelaxationCost, None] = None,
             relax_price: float = 1.0) -> Method:
    """TeCoA + LORE's embedding constraint (paper App. J.7); dual settings and `relax` as in `lore` (ascent on
    the violations: the rate signal is LORE's only)."""
    settings = _dual_settings(preset, dual, hidden=hidden, init=init, features=features, link=link,
                              optimizer=dual_optimizer, lr=dual_lr, beta1=dual_beta1, beta2=dual_beta2)
    constraint = _proximity(rho, True, relax=relaxation(relax, relax_price))
    return Method("tecoa-l2", zero_shot_cross_entropy, constraint, multiplier=dual_factory(settings),
                  supervised=True, dual_ascent=DualAscent.of(settings))


def tecoa_kl(rho: float = 0.1, *, preset: str = DEFAULT_PRESET, dual: Union[DualKind, DualSettings] = "network",
             hidden: Optional[int] = None, init: Optional[float] = None, features: Optional[str] = None,
             link: Optional[str] = None, dual_optimizer: Optional[str] = None,
             dual_lr: Optional[float] = None, dual_beta1: Optional[float] = None,
             dual_beta2: Optional[float] = None, relax: Union[str, RelaxationCost, None] = None,
             relax_price: float = 1.0) -> Method:
    """TeCoA + KL(p_0 || p_theta) <= rho H(p_0) on zero-shot predictions (paper App. J.7); dual settings and
    `relax` as in `tecoa_l2`."""
    settings = _dual_settings(preset, dual, hidden=hidden, init=init, features=features, link=link,
                              optimizer=dual_optimizer, lr=dual_lr, beta1=dual_beta1, beta2=dual_beta2)
    constraint = Constraint(d=kl_div, margin=EntropyMargin(rho), name="clean", relax=relaxation(relax, relax_price))
    return Method("tecoa-kl", zero_shot_cross_entropy, constraint, view=zero_shot_logits,
                  multiplier=dual_factory(settings), supervised=True, dual_ascent=DualAscent.of(settings))


def build_method(name: str, settings: Any) -> Method:
    """Method `name`, built by its registry entry's factory (`lore.registry.MethodEntry.factory`) with the options
    the entry names, read from `settings` (a `TrainConfig` or any object with those attributes).

    Raises:
        ValueError: an unknown name, a factory that cannot be imported, a setting `settings` lacks, or a factory
            that does not return a `Method`.
    """
    entry = method_entry(name)
    factory = resolve(entry.factory, f"the factory of method {name!r}")
    missing = [source for source in entry.options.values() if not hasattr(settings, source)]
    if missing:
        raise ValueError(f"method {name!r} reads {missing}, which {type(settings).__name__} does not have")
    method = factory(**{keyword: getattr(settings, source) for keyword, source in entry.options.items()})
    if not isinstance(method, Method):
        raise ValueError(f"the factory of method {name!r} returned {type(method).__name__}, not a lore Method")
    return method


__all__ = ["Batch", "DualAscent", "Method", "build_method", "dual_factory", "embedding", "embedding_distance", "fare",
           "lore", "naive", "relaxation", "tecoa", "tecoa_kl", "tecoa_l2", "zero_shot_cross_entropy", "zero_shot_logits"]
