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

A seventh method is one more `Method(...)` in user code; see docs/lore.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

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
    LinearMultiplier,
    Multiplier,
    MultiplierNetwork,
    NormMargin,
    ScalarMultiplier,
    kl_div,
    sq_l2,
)

from .heads import ZeroShotHead
from .registry import DUAL_FEATURES, DUAL_LINKS, DUAL_SIGNALS
from .registry import METHODS as REGISTRY

DualKind = Literal["scalar", "linear", "network"]
DualFeatures = Literal["standardized", "unit-rms", "raw"]
DualLink = Literal["softplus", "projected"]
DualSignal = Literal["rate", "violation"]


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
    """

    name: str
    robust_loss: Callable[[torch.Tensor, Batch], torch.Tensor]
    constraint: Optional[Constraint] = None
    view: Callable[[torch.Tensor, Batch], torch.Tensor] = embedding
    multiplier: Optional[Callable[[int], Multiplier]] = None
    formulation: Formulation = Lagrangian()
    supervised: bool = False


def dual_factory(kind: DualKind = "network", *, hidden: int = 512, init: float = 1.0,
                 features: DualFeatures = "standardized", link: DualLink = "softplus") -> Callable[[int], Multiplier]:
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
    raise ValueError(f"dual must be 'network', 'linear' or 'scalar', got {kind!r}")


def fare() -> Method:
    """FARE (Schlarmann et al. 2024; paper Eq. 2): unsupervised, unconstrained."""
    return Method("fare", embedding_distance)


def naive(weight: float = 1.0) -> Method:
    """Naive regularization (paper Eq. 3): FARE + weight * ||phi(x) - phi_0(x)||^2, weight fixed."""
    clean = Constraint(d=sq_l2, margin=FixedMargin(0.0), name="clean")
    return Method("naive", embedding_distance, clean, formulation=FixedPenalty(weight))


def _proximity(rho: float, adaptive_margin: bool, violation_rate: Optional[float] = None) -> Constraint:
    margin = NormMargin(rho) if adaptive_margin else FixedMargin(rho)
    return Constraint(d=sq_l2, margin=margin, name="clean", violation_rate=violation_rate)


def lore(
    rho: float = 0.1,
    *,
    dual: DualKind = "network",
    hidden: int = 512,
    init: float = 1.0,
    adaptive_margin: bool = True,
    features: DualFeatures = "standardized",
    link: DualLink = "projected",
    penalty: float = 0.0,
    dual_signal: DualSignal = "rate",
    violation_rate: float = 0.05,
) -> Method:
    """LORE (paper Eq. 7, Algorithm 1).

    Args:
        rho: margin scale (paper: 0.1; 0.01 CIFAR-10, 0.05 DINOv2-S, 0.15-0.2 elsewhere).
        dual: multiplier parameterisation, "network" (paper), "linear" or "scalar" (App. G).
        hidden: hidden width of the dual network.
        init: initial lambda.
        adaptive_margin: rho ||phi_0(x)||^2 (paper) if True, the fixed tolerance rho otherwise (Table 13).
        features: what the dual network sees of phi_0(x): "standardized" (default), "unit-rms" or "raw"
            (the paper's); see `dual_factory`.
        link: "projected" (default) or "softplus" (the paper's); see `dual_factory`.
        penalty: c > 0 adds (c/2) relu(g(x))^2 per sample to the primal (augmented Lagrangian): each
            violating sample is pushed back on its own, whatever lambda_w(x); 0 is the paper's Lagrangian.
        dual_signal: what the dual ascends on: "rate" (default): 1[outside the margin] - violation_rate
            (`Constraint.violation_rate`), so lambda_w(x) rises where more than that share of the samples are
            outside and falls to 0 where fewer are; "violation": the violations themselves (the paper's).
        violation_rate: alpha in [0, 1), the tolerated share outside the margin per neighbourhood ("rate").
    """
    if dual_signal not in DUAL_SIGNALS:
        raise ValueError(f"dual_signal must be one of {DUAL_SIGNALS}, got {dual_signal!r}")
    rate = violation_rate if dual_signal == "rate" else None
    formulation = AugmentedLagrangian(penalty) if penalty else Lagrangian()
    return Method("lore", embedding_distance, _proximity(rho, adaptive_margin, rate), formulation=formulation,
                  multiplier=dual_factory(dual, hidden=hidden, init=init, features=features, link=link))


def tecoa() -> Method:
    """TeCoA (Mao et al. 2023; paper Eq. 25): supervised adversarial CE on zero-shot logits."""
    return Method("tecoa", zero_shot_cross_entropy, supervised=True)


def tecoa_l2(rho: float = 0.1, *, dual: DualKind = "network", hidden: int = 512, init: float = 1.0,
             features: DualFeatures = "standardized", link: DualLink = "projected") -> Method:
    """TeCoA + LORE's embedding constraint (paper App. J.7)."""
    return Method(
        "tecoa-l2",
        zero_shot_cross_entropy,
        _proximity(rho, True),
        multiplier=dual_factory(dual, hidden=hidden, init=init, features=features, link=link),
        supervised=True,
    )


def tecoa_kl(rho: float = 0.1, *, dual: DualKind = "network", hidden: int = 512, init: float = 1.0,
             features: DualFeatures = "standardized", link: DualLink = "projected") -> Method:
    """TeCoA + KL(p_0 || p_theta) <= rho H(p_0) on zero-shot predictions (paper App. J.7)."""
    return Method(
        "tecoa-kl",
        zero_shot_cross_entropy,
        Constraint(d=kl_div, margin=EntropyMargin(rho), name="clean"),
        view=zero_shot_logits,
        multiplier=dual_factory(dual, hidden=hidden, init=init, features=features, link=link),
        supervised=True,
    )


METHODS: dict[str, Callable[..., Method]] = {name: globals()[entry.factory] for name, entry in REGISTRY.items()}
"""Method name -> factory, in the registry's order (`lore.registry` is the one list of methods)."""
