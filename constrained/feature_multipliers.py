"""Multipliers computed from per-sample features: lambda(x) = link(head(f(x))), with a linear head
(`LinearMultiplier`) or a 2-layer network (`MultiplierNetwork`, the paper's lambda_w(x) = F_w(phi_0(x))).

Both implement `constrained.protocols.MultiplierKind` and the optional `FitsFeatures` hook (per-feature
standardization fitted once on a sample of the features).
"""

from __future__ import annotations

import math
from typing import Optional, cast

import cooper
import torch
import torch.nn.functional as F
from torch import nn

from ._tensors import converted, detached
from .protocols import Observation
from .multipliers import constraint_type
from .validation import check_nonnegative_finite, check_positive_int


LINKS = ("softplus", "projected")
"""How a feature multiplier maps the head's output z to lambda >= 0.

- "softplus": lambda = softplus(z), the paper's. Its dual gradient is scaled by sigmoid(z): a sample whose
  constraint was slack for a while is driven to z << 0, where the gradient vanishes, and its lambda recovers
  slowly once it violates again (a debt accumulated while slack).
- "projected": lambda = relu(z), with the dual gradient of projected ascent on lambda(x) >= 0: the ascent
  direction s(x) passes to z unchanged where lambda(x) > 0 or s(x) > 0, and is dropped where lambda(x) = 0 and
  s(x) <= 0 (a multiplier at its bound with nothing to enforce stays there). lambda is then exactly 0 on
  samples that keep their constraint and rises at full speed as soon as they violate; no debt.
"""


class _ProjectedAscent(torch.autograd.Function):
    """relu(z) forward; backward passes the ascent direction where z > 0 or the direction is upward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.where((z > 0) | (grad > 0), grad, torch.zeros_like(grad))


class _FeatureMultiplier(cooper.multipliers.ImplicitMultiplier):
    """Base for multipliers computed from per-sample features: lambda = softplus(head(f))."""

    averages_constraint = False
    per_index = False
    free_sign = False  # softplus output: lambda >= 0, inequality constraints only
    expects_constraint_features = True  # cooper's own formulations read it (a cooper CMP); PrimalDual calls value()
    feature_mean: torch.Tensor  # [F] buffers of `standardize`
    feature_scale: torch.Tensor
    standardization_fitted: torch.Tensor  # bool scalar

    def __init__(self, head: nn.Module, in_features: int, init: float, normalize: bool = False,
                 standardize: bool = False, link: str = "softplus") -> None:
        super().__init__()
        init = check_nonnegative_finite(init, "init")
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        if init <= 0 and link == "softplus":
            raise ValueError(f"init must be > 0 for a softplus multiplier, got {init}")
        self.link = link
        for name, flag in (("normalize", normalize), ("standardize", standardize)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if normalize and standardize:
            raise ValueError("choose one of normalize and standardize")
        self.in_features = in_features
        self.normalize = normalize
        self.standardize = standardize
        # per-feature statistics of `standardize`, set by `fit_standardization` (the identity until then)
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_scale", torch.ones(in_features))
        self.register_buffer("standardization_fitted", torch.tensor(False))
        self.head = head
        last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():  # every sample starts at lambda = init
            last.weight.zero_()
            last.bias.fill_(math.log(math.expm1(init)) if link == "softplus" else init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # cooper's feature slot
        """Maps [B, in_features] features to [B] multipliers >= 0 (> 0 with the softplus link)."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects features of shape [B, {self.in_features}], "
                f"got {tuple(features.shape)}"
            )
        features = converted(detached(features), next(self.head.parameters()).dtype)
        if self.standardize:
            if not bool(self.standardization_fitted):
                raise RuntimeError(f"{type(self).__name__}(standardize=True) has no feature statistics yet: call "
                                   "fit_standardization(features) with a sample of the features before training")
            features = (features - self.feature_mean) / self.feature_scale
        elif self.normalize:  # unit root-mean-square per sample: the same network whatever the embedding's scale
            features = features / features.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
        z = self.head(features).squeeze(-1)
        if self.link == "projected":
            return cast(torch.Tensor, _ProjectedAscent.apply(z))
        return F.softplus(z)

    @torch.no_grad()
    def fit_standardization(self, features: torch.Tensor) -> None:
        """Sets the per-feature mean and standard deviation that `standardize=True` removes.

        Args:
            features: [N, in_features] features of N >= 2 typical samples (for LORE: phi_0 of training
                images), e.g. a thousand.
        """
        if features.dim() != 2 or features.shape[1] != self.in_features or features.shape[0] < 2:
            raise ValueError(f"fit_standardization expects features of shape [N >= 2, {self.in_features}], "
                             f"got {tuple(features.shape)}")
        features = features.detach().to(self.feature_mean.device, torch.float64)
        if not bool(torch.isfinite(features).all()):
            raise ValueError("fit_standardization: features contain NaN or inf")
        scale = features.std(0)
        self.feature_mean.copy_(features.mean(0))
        self.feature_scale.copy_(scale.clamp_min(1e-6 * float(scale.max().clamp_min(1e-12))))
        self.standardization_fitted.fill_(True)

    @property
    def features_fitted(self) -> bool:
        """The `FitsFeatures` hook: False while `standardize` has no statistics yet (reads the buffer: a sync)."""
        return not self.standardize or bool(self.standardization_fitted)

    def fit_features(self, features: torch.Tensor) -> None:
        """The `FitsFeatures` hook: `fit_standardization` when `standardize`, otherwise nothing to fit."""
        if self.standardize:
            self.fit_standardization(features)

    def features_of(self, observation: Observation) -> torch.Tensor:
        if observation.features is None:
            raise ValueError(
                f"constraint {observation.constraint.name!r} uses a {type(self).__name__}: "
                "pass features=... to observe()"
            )
        return observation.features.detach()  # lambda_w(x) is a function of fixed features: no gradient into the model

    def value(self, features: Optional[torch.Tensor]) -> torch.Tensor:
        """[B] lambda(features) for the [B, F] features `features_of` returned."""
        if features is None:
            raise ValueError(f"{type(self).__name__} needs the observation's features")
        return cast(torch.Tensor, self(features))

    def bind(self, equality: bool) -> None:
        """Refuses an equality: the link keeps lambda >= 0."""
        if equality:
            raise ValueError(f"{type(self).__name__} supports inequality constraints only")
        self.set_constraint_type(constraint_type(equality))

    def project_(self) -> None:
        """Nothing to project on the parameters: the link keeps lambda >= 0."""

    def sanity_check(self) -> None:
        """cooper's hook, run by `set_constraint_type`: `bind` has checked the type."""

    def post_step_(self) -> None:
        """cooper's projection hook: nothing to project (`project_`)."""


class LinearMultiplier(_FeatureMultiplier):
    """lambda(f) = softplus(w . f + b): a linear map of the features, kept >= 0.

    The "linear" dual parameterisation of the paper's ablation (App. G, K.2).

    Args:
        in_features: F, the width of the features.
        init: initial lambda of every sample, > 0.
        normalize: rescale each sample's features to unit root-mean-square first.
        standardize: subtract each feature's mean and divide by its standard deviation (statistics from
            `fit_standardization`, which must be called before the first step).
        link: "softplus" (lambda = softplus(w . f + b)) or "projected" (relu with projected-ascent gradients;
            see `LINKS`).
    """

    def __init__(self, in_features: int, init: float = 1.0, normalize: bool = False,
                 standardize: bool = False, link: str = "softplus") -> None:
        in_features = check_positive_int(in_features, "in_features")
        super().__init__(nn.Linear(in_features, 1), in_features, init, normalize, standardize, link)


class MultiplierNetwork(_FeatureMultiplier):
    """lambda_w(x) = softplus(MLP(f(x))): the paper's dual network (Sec. 5, App. C).

    Two linear layers with a ReLU between them; softplus keeps the output
    positive without ReLU's dead gradients. For LORE the features are the
    reference embedding phi_0(x).

    Args:
        in_features: F, the width of the features (the embedding dimension).
        hidden: hidden width (paper: 512).
        init: initial lambda of every sample, > 0.
        normalize: rescale each sample's features to unit root-mean-square first, so that the hidden layer
            works in the same regime whatever the scale of the embeddings (||phi_0||^2 ~ 2 on the digits
            model, ~ 100 for CLIP ViT-B/32); lambda then depends on the direction of the features only.
        standardize: subtract each feature's mean and divide by its standard deviation, statistics from
            `fit_standardization` (call it with a sample of the features before training). Embeddings share
            a large common component; without it every hidden unit sees nearly the same input on every
            sample, the network's updates move lambda(x) of all samples together and lambda stays flat across
            samples (docs/lore.md: measured on the embedded default).
        link: "softplus" (the paper's) or "projected" (lambda = relu(MLP(f)) with projected-ascent gradients:
            no vanishing gradient on samples that were slack for a while; see `LINKS`).
    """

    def __init__(self, in_features: int, hidden: int = 512, init: float = 1.0, normalize: bool = False,
                 standardize: bool = False, link: str = "softplus") -> None:
        in_features = check_positive_int(in_features, "in_features")
        hidden = check_positive_int(hidden, "hidden")
        head = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        super().__init__(head, in_features, init, normalize, standardize, link)

