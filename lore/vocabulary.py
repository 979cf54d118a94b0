"""Every closed set of names `lore` accepts, defined once as a `Literal` type (torch-free).

The configuration (`TrainConfig`, `EvalConfig`), the command line's choices, the method factories and
`RobustStep` all read these; nothing else spells a set out. Each `Literal` is the type of the settings it names,
and `choices(Literal)` its names in order. Registries (methods, attacks, model families) are open sets and live
in `lore.registry`, `lore.evaluation.attacks` and `lore.models.families`, not here.

Two sets have a second home in `constrained`, which is installable without `lore` and imports torch, which this
module must not: the multiplier links (`constrained.feature_multipliers.LINKS`) and the check modes
(`constrained.primal_dual.CHECKS`). `lore` passes its names through to `constrained`, which checks them at its
own boundary; a test holds the two spellings equal.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

DualKind = Literal["network", "linear", "scalar"]
"""How a constrained method's multiplier is parameterised: a 2-layer network on phi_0(x) (the paper's), a linear
function of it, or one scalar lambda."""

DualFeatures = Literal["standardized", "unit-rms", "raw"]
"""What a dual network or linear multiplier sees of phi_0(x): each feature standardized over training images,
each sample rescaled to unit root-mean-square, or phi_0(x) as it is (the paper's)."""

DualSignal = Literal["rate", "violation"]
"""What LORE's dual step ascends on: the share outside the margin, or the violations (Algorithm 1's)."""

DualLink = Literal["softplus", "projected"]
"""How a dual network or linear multiplier maps its output to lambda >= 0 (`constrained.feature_multipliers.LINKS`)."""

DualOptimizer = Literal["sgd", "adam"]
"""How a multiplier's parameters ascend: plain gradient ascent (Algorithm 1's) or Adam."""

Relaxation = Literal["none", "quadratic", "linear"]
"""A constrained method's resilient relaxation (`constrained.relaxation`): none (the hard margin, the paper's),
h(u) = price u^2 / 2 (`Quadratic`), or h(u) = price u (`Linear`: lambda capped at the price)."""

BaselineUpdates = Literal["authors", "equal"]
"""How many encoder updates per adversarial batch a method with its own authors' recipe (FARE, TeCoA) takes:
theirs (`MethodEntry.authors_updates`, the default), or K like the constrained methods (the equal-updates
control)."""

ProbeSplit = Literal["test", "validation"]
"""Which held-out part of the training data a run's probe (and the main job's evaluation) reads: "validation"
when choosing settings (the digits only), "test" when reporting."""

Passes = Literal["fused", "sequential"]
"""How a constrained method's adversarial and clean images go through the encoder (`RobustStep`): one
concatenated forward, or one after the other with the adversarial term back-propagated first."""

Checks = Literal["deferred", "eager"]
"""When a step's correctness checks are read: with its numbers, in one transfer (deferred), or each where it is
made (eager; `constrained.primal_dual.CHECKS`)."""

PassSetting = Literal["auto", "fused", "sequential"]
"""`Passes`, or "auto": sequential on GPUs (memory decides the batch there), fused elsewhere."""

Precision = Literal["fp32", "bf16"]
"""The training and evaluation precision: fp32, or bf16 autocast."""

Corruption = Literal["blur", "brightness", "contrast", "jpeg", "noise"]
"""The image corruptions `lore eval --corruptions` measures (`lore.attacks.corruptions`)."""


def choices(literal: Any) -> tuple[str, ...]:
    """The names of a `Literal` type, in the order they are written."""
    return tuple(get_args(literal))


def check_choice(value: Any, literal: Any, what: str) -> str:
    """`value` when it is one of `literal`'s names; otherwise a ValueError naming `what`, the names and the value."""
    names = choices(literal)
    if value not in names:
        raise ValueError(f"{what} must be one of {names}, got {value!r}")
    return value
