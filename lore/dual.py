"""A constrained method's dual: its multiplier and how it ascends, built from one `lore.presets.DualSettings`,
and its resilient relaxation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

from constrained import Linear, LinearMultiplier, MultiplierKind, MultiplierNetwork, Quadratic, RelaxationCost, ScalarMultiplier

from .presets import DualSettings
from .vocabulary import DualOptimizer, Relaxation, check_choice, choices


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

    optimizer: DualOptimizer = "sgd"
    lr: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.999

    def __post_init__(self) -> None:
        check_choice(self.optimizer, DualOptimizer, "dual optimizer")
        if not (isinstance(self.lr, (int, float)) and self.lr >= 0):
            raise ValueError(f"dual lr must be >= 0, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"dual {name} must be in [0, 1), got {getattr(self, name)!r}")

    @classmethod
    def of(cls, settings: DualSettings) -> "DualAscent":
        """The ascent `settings` describe."""
        return cls(settings.optimizer, settings.lr, settings.beta1, settings.beta2)

    def __call__(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=(self.beta1, self.beta2), maximize=True)
        return torch.optim.SGD(params, lr=self.lr, maximize=True)


def dual_factory(settings: DualSettings) -> Callable[[int], MultiplierKind]:
    """Multiplier factory embed_dim -> multiplier for the paper's dual parameterisations (App. G, K.2).

    `settings.kind`: "network" (a 2-layer MLP on phi_0(x) of width `settings.hidden`, the paper's), "linear", or
    "scalar" (one lambda). Network and linear multipliers see phi_0(x) as `settings.features` says: "raw" (the
    paper's), "standardized" (each feature's mean and standard deviation over training images removed; the
    trainer fits them through the multiplier's `constrained.FitsFeatures` hook, see `RobustStep.fit_dual_features`)
    or "unit-rms" (each sample rescaled to unit root-mean-square), and map their output to lambda >= 0 through
    `settings.link` (`constrained.feature_multipliers.LINKS`). Every multiplier starts at lambda = `settings.init`.
    """
    scaling = {"normalize": settings.features == "unit-rms", "standardize": settings.features == "standardized"}
    init, link = settings.init, settings.link
    if settings.kind == "network":
        return lambda dim: MultiplierNetwork(dim, hidden=settings.hidden, init=init, link=link, **scaling)
    if settings.kind == "linear":
        return lambda dim: LinearMultiplier(dim, init=init, link=link, **scaling)
    return lambda dim: ScalarMultiplier(init=init)


def relaxation(relax: Union[str, RelaxationCost, None], price: float = 1.0) -> Optional[RelaxationCost]:
    """A constrained method's resilient relaxation (`constrained.relaxation`): None or "none" (the hard margin),
    "quadratic" (`Quadratic(price)`), "linear" (`Linear(price)`), or a user's `RelaxationCost` (then `price` is
    its own business and must stay at its default)."""
    if relax is None or relax == "none":
        return None
    if isinstance(relax, str):
        if relax not in choices(Relaxation):
            raise ValueError(f"relax must be one of {choices(Relaxation)} or a constrained.RelaxationCost, got {relax!r}")
        return Quadratic(price) if relax == "quadratic" else Linear(price)
    if price != 1.0:
        raise ValueError(f"relax_price={price!r} prices the named relaxations only; {type(relax).__name__} states its own")
    return relax
