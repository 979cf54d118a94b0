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
import torch.nn.functional as F

from constrained import (
    AugmentedLagrangian,
    Constraint,
    EntropyMargin,
    FixedMargin,
    FixedPenalty,
    Formulation,
    Lagrangian,
    Linear,
    LinearMultiplier,
    MultiplierKind,
    MultiplierNetwork,
    NormMargin,
    Quadratic,
    RelaxationCost,
    ScalarMultiplier,
    kl_div,
    sq_l2,
)

from .heads import ZeroShotHead
from .plugins import resolve
from .presets import DEFAULT_PRESET, resolve_dual
from .registry import DUAL_FEATURES, DUAL_KINDS, DUAL_LINKS, DUAL_OPTIMIZERS, DUAL_SIGNALS, RELAXATIONS, method_entry


@dataclass(frozen=True)
class Batch:
    """What a method may look at for one batch.

    Attributes:
        images: [B, C, H, W] clean images in [0, 1].
        reference: [B, D] frozen reference embeddings phi_0(x).
        labels: [B] int64 class labels (supervised methods only).
        head: zero-shot head mapping embeddings to logits (supervised methods only).
    """

    images: torch.Tensor
    reference: torch.Tensor
    labels: Optional[torch.Tensor] = None
    head: Optional[ZeroShotHead] = None


def embedding(embeddings: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The identity view: constraints compare embeddings [B, D]."""
    return embeddings


def zero_shot_logits(embeddings: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The logits view: [B, D] embeddings -> [B, C] zero-shot logits through `batch.head`."""
    if batch.head is None:
        raise ValueError("this method needs a zero-shot head: pass head=ZeroShotHead(...) to the trainer")
    return batch.head(embeddings)


def embedding_distance(adversarial: torch.Tensor, batch: Batch) -> torch.Tensor:
    """FARE's loss ||phi(x + delta) - phi_0(x)||^2 per sample, [B]."""
    return sq_l2(adversarial, batch.reference)


def zero_shot_cross_entropy(adversarial: torch.Tensor, batch: Batch) -> torch.Tensor:
    """TeCoA's loss CE(scale * cos(phi(x + delta), text_c), y) per sample, [B]."""
    if batch.labels is None:
        raise ValueError("this method is supervised: pass labels to the training step")
    logits = zero_shot_logits(adversarial, batch)
    labels = batch.labels
    if labels.dtype not in (torch.int64, torch.int32) or labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be integer class ids of shape [{logits.shape[0]}], got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}] (the head's classes), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]; ignored labels (-100) are not supported")
    return F.cross_entropy(logits, labels.long(), reduction="none")


@dataclass(frozen=True)
class DualAscent:
    """How a method's multiplier parameters ascend (a factory params -> maximising optimizer).

    Args:
        optimizer: "sgd": plain gradient ascent, Algorithm 1's omega <- omega + lr * L_clean * grad lambda_w(x);
            "adam": Adam with betas (beta1, beta2), steps of about lr whatever the violations' scale.
        lr: the dual learning rate (paper: 5e-4).
        beta1: Adam's beta1 (ignored by "sgd").
        beta2: Adam's beta2 (ignored by "sgd").
    """

    optimizer: str = "sgd"
    lr: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.999

    def __post_init__(self) -> None:
        if self.optimizer not in DUAL_OPTIMIZERS:
            raise ValueError(f"dual optimizer must be one of {DUAL_OPTIMIZERS}, got {self.optimizer!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr >= 0):
            raise ValueError(f"dual lr must be >= 0, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"dual {name} must be in [0, 1), got {getattr(self, name)!r}")

    def __call__(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=(self.beta1, self.beta2), maximize=True)
        return torch.optim.SGD(params, lr=self.lr, maximize=True)


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


def dual_factory(kind: str = "network", *, hidden: int = 512, init: float = 1.0,
                 features: str = "standardized", link: str = "softplus") -> Callable[[int], MultiplierKind]:
    """Multiplier factory for the paper's dual parameterisations (App. G, K.2).

    Args:
        kind: "network" (2-layer MLP on phi_0(x), the paper's), "linear", or "scalar".
        hidden: hidden width of the network (paper: 512).
        init: initial lambda (> 0 for network/linear, >= 0 for scalar).
        features: how network/linear see phi_0(x): "standardized" (each feature's mean and standard
            deviation over training images removed; the trainer fits them, see `fit_dual_features`),
            "unit-rms" (each sample rescaled to unit root-mean-square) or "raw" (the paper's).
        link: network/linear output -> lambda: "softplus" (the paper's) or "projected" (relu with the
            gradient of projected ascent; `constrained.multipliers.LINKS`).
    """
    if features not in DUAL_FEATURES:
        raise ValueError(f"features must be one of {DUAL_FEATURES}, got {features!r}")
    if link not in DUAL_LINKS:
        raise ValueError(f"link must be one of {DUAL_LINKS}, got {link!r}")
    scaling = {"normalize": features == "unit-rms", "standardize": features == "standardized"}
    if kind == "network":
        return lambda dim: MultiplierNetwork(dim, hidden=hidden, init=init, link=link, **scaling)
    if kind == "linear":
        return lambda dim: LinearMultiplier(dim, init=init, link=link, **scaling)
    if kind == "scalar":
        return lambda dim: ScalarMultiplier(init=init)
    raise ValueError(f"dual must be one of {DUAL_KINDS}, got {kind!r}")


def fare() -> Method:
    """FARE (Schlarmann et al. 2024; paper Eq. 2): unsupervised, unconstrained."""
    return Method("fare", embedding_distance, authors_updates=method_entry("fare").authors_updates)


def naive(weight: float = 1.0) -> Method:
    """Naive regularization (paper Eq. 3): FARE + weight * ||phi(x) - phi_0(x)||^2, weight fixed."""
    clean = Constraint(d=sq_l2, margin=FixedMargin(0.0), name="clean")
    return Method("naive", embedding_distance, clean, formulation=FixedPenalty(weight))


def relaxation(relax: Union[str, RelaxationCost, None], price: float = 1.0) -> Optional[RelaxationCost]:
    """A constrained method's resilient relaxation (`constrained.relaxation`): None or "none" (the hard margin),
    "quadratic" (`Quadratic(price)`), "linear" (`Linear(price)`), or a user's `RelaxationCost` (then `price` is
    its own business and must stay at its default)."""
    if relax is None or relax == "none":
        return None
    if isinstance(relax, str):
        if relax not in RELAXATIONS:
            raise ValueError(f"relax must be one of {RELAXATIONS} or a constrained.RelaxationCost, got {relax!r}")
        return Quadratic(price) if relax == "quadratic" else Linear(price)
    if price != 1.0:
        raise ValueError(f"relax_price={price!r} prices the named relaxations only; {type(relax).__name__} states its own")
    return relax


def _proximity(rho: float, adaptive_margin: bool, violation_rate: Optional[float] = None,
               relax: Optional[RelaxationCost] = None) -> Constraint:
    margin = NormMargin(rho) if adaptive_margin else FixedMargin(rho)
    return Constraint(d=sq_l2, margin=margin, name="clean", violation_rate=violation_rate, relax=relax)


class _Dual:
    """A constrained method's dual settings resolved from a preset (`lore.presets`) and explicit overrides."""

    def __init__(self, preset: str, **given) -> None:
        self.values = resolve_dual(preset, given)
        v = self.values
        if v["dual_signal"] not in DUAL_SIGNALS:
            raise ValueError(f"dual_signal must be one of {DUAL_SIGNALS}, got {v['dual_signal']!r}")

    def multiplier(self, kind: str) -> Callable[[int], MultiplierKind]:
        v = self.values
        return dual_factory(kind, hidden=v["dual_hidden"], init=v["dual_init"], features=v["dual_features"],
                            link=v["dual_link"])

    def ascent(self) -> DualAscent:
        v = self.values
        return DualAscent(v["dual_optimizer"], v["dual_lr"], v["dual_beta1"], v["dual_beta2"])

    def violation_rate(self) -> Optional[float]:
        return self.values["violation_rate"] if self.values["dual_signal"] == "rate" else None


def lore(
    rho: float = 0.1,
    *,
    preset: str = DEFAULT_PRESET,
    dual: str = "network",
    hidden: Optional[int] = None,
    init: Optional[float] = None,
    adaptive_margin: bool = True,
    features: Optional[str] = None,
    link: Optional[str] = None,
    penalty: float = 0.0,
    dual_signal: Optional[str] = None,
    violation_rate: Optional[float] = None,
    dual_optimizer: Optional[str] = None,
    dual_lr: Optional[float] = None,
    dual_beta1: Optional[float] = None,
    dual_beta2: Optional[float] = None,
    relax: Union[str, RelaxationCost, None] = None,
    relax_price: float = 1.0,
) -> Method:
    """LORE (paper Eq. 7, Algorithm 1).

    Every dual setting left None takes the value of `preset` (`lore.presets`): "paper" (default) is
    Algorithm 1 with App. C's values (ascent on the violations, raw phi_0(x), softplus, SGD at 5e-4, hidden
    512); "embedded" is the same ascent from lambda = 0 at 3e-2 on standardized phi_0(x) (projected link, hidden
    32), measured on the embedded digits model. With `RobustStep`'s default K = 5, `lore.lore()` is the
    paper's LORE.

    Args:
        rho: margin scale (paper: 0.1; 0.01 CIFAR-10, 0.05 DINOv2-S, 0.15-0.2 elsewhere).
        preset: the dual preset the other dual settings default to.
        dual: multiplier parameterisation, "network" (paper), "linear" or "scalar" (App. G).
        hidden: hidden width of the dual network.
        init: initial lambda.
        adaptive_margin: rho ||phi_0(x)||^2 (paper) if True, the fixed tolerance rho otherwise (Table 13).
        features: what the dual network sees of phi_0(x): "raw" (the paper's), "standardized" or "unit-rms";
            see `dual_factory`.
        link: "softplus" (the paper's) or "projected"; see `dual_factory`.
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
    settings = _Dual(preset, dual_hidden=hidden, dual_init=init, dual_features=features, dual_link=link,
                     dual_signal=dual_signal, violation_rate=violation_rate, dual_optimizer=dual_optimizer,
                     dual_lr=dual_lr, dual_beta1=dual_beta1, dual_beta2=dual_beta2)
    formulation = AugmentedLagrangian(penalty) if penalty else Lagrangian()
    constraint = _proximity(rho, adaptive_margin, settings.violation_rate(), relaxation(relax, relax_price))
    return Method("lore", embedding_distance, constraint,
                  formulation=formulation, multiplier=settings.multiplier(dual), dual_ascent=settings.ascent())


def tecoa() -> Method:
    """TeCoA (Mao et al. 2023; paper Eq. 25): supervised adversarial CE on zero-shot logits."""
    return Method("tecoa", zero_shot_cross_entropy, supervised=True,
                  authors_updates=method_entry("tecoa").authors_updates)


def _tecoa_dual(preset, hidden, init, features, link, dual_optimizer, dual_lr, dual_beta1, dual_beta2) -> _Dual:
    """The TeCoA variants' dual: `preset` with these overrides, ascending on the violations (the rate signal is
    LORE's only)."""
    return _Dual(preset, dual_hidden=hidden, dual_init=init, dual_features=features, dual_link=link,
                 dual_signal="violation", dual_optimizer=dual_optimizer, dual_lr=dual_lr, dual_beta1=dual_beta1,
                 dual_beta2=dual_beta2)


def tecoa_l2(rho: float = 0.1, *, preset: str = DEFAULT_PRESET, dual: str = "network",
             hidden: Optional[int] = None, init: Optional[float] = None, features: Optional[str] = None,
             link: Optional[str] = None, dual_optimizer: Optional[str] = None,
             dual_lr: Optional[float] = None, dual_beta1: Optional[float] = None,
             dual_beta2: Optional[float] = None, relax: Union[str, RelaxationCost, None] = None,
             relax_price: float = 1.0) -> Method:
    """TeCoA + LORE's embedding constraint (paper App. J.7); dual settings and `relax` as in `lore` (ascent on
    the violations: the rate signal is LORE's only)."""
    settings = _tecoa_dual(preset, hidden, init, features, link, dual_optimizer, dual_lr, dual_beta1, dual_beta2)
    constraint = _proximity(rho, True, relax=relaxation(relax, relax_price))
    return Method("tecoa-l2", zero_shot_cross_entropy, constraint, multiplier=settings.multiplier(dual),
                  supervised=True, dual_ascent=settings.ascent())


def tecoa_kl(rho: float = 0.1, *, preset: str = DEFAULT_PRESET, dual: str = "network",
             hidden: Optional[int] = None, init: Optional[float] = None, features: Optional[str] = None,
             link: Optional[str] = None, dual_optimizer: Optional[str] = None,
             dual_lr: Optional[float] = None, dual_beta1: Optional[float] = None,
             dual_beta2: Optional[float] = None, relax: Union[str, RelaxationCost, None] = None,
             relax_price: float = 1.0) -> Method:
    """TeCoA + KL(p_0 || p_theta) <= rho H(p_0) on zero-shot predictions (paper App. J.7); dual settings and
    `relax` as in `tecoa_l2`."""
    settings = _tecoa_dual(preset, hidden, init, features, link, dual_optimizer, dual_lr, dual_beta1, dual_beta2)
    return Method(
        "tecoa-kl",
        zero_shot_cross_entropy,
        Constraint(d=kl_div, margin=EntropyMargin(rho), name="clean", relax=relaxation(relax, relax_price)),
        view=zero_shot_logits,
        multiplier=settings.multiplier(dual),
        supervised=True,
        dual_ascent=settings.ascent(),
    )


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
