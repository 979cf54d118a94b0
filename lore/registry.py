"""The registry of methods: the one list of method names and how a configuration builds each (torch-free).

The command line (`lore train --method`), `TrainConfig` (its accepted names and the fields each method
reads) and `lore.methods` (whose `METHODS` maps each name to its factory, and `build_method` builds it)
all read `METHODS` here. To add a method, register it below with the `TrainConfig` fields it takes and
add its factory to `lore.methods.METHODS`; a test refuses one without the other.

This module imports nothing, of lore or of torch: `lore --help` and config validation stay free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Optional

DUAL_KINDS: tuple[str, ...] = ("network", "linear", "scalar")
"""How LORE's multiplier is parameterised (`lore.methods.dual_factory`): a 2-layer network on phi_0(x) (the
paper's), a linear function of it, or one scalar lambda."""

DUAL_FEATURES: tuple[str, ...] = ("standardized", "unit-rms", "raw")
"""What a dual network or linear multiplier sees of phi_0(x) (`lore.methods.dual_factory`)."""

DUAL_SIGNALS: tuple[str, ...] = ("rate", "violation")
"""What LORE's dual step ascends on (`lore.methods.lore`): the share outside the margin, or the violations."""

DUAL_LINKS: tuple[str, ...] = ("softplus", "projected")
"""How a dual network or linear multiplier maps its output to lambda >= 0 (`constrained.multipliers.LINKS`)."""

DUAL_OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
"""How a multiplier's parameters ascend (`lore.methods.DualAscent`): plain gradient ascent or Adam."""

_RELAX = {"relax": "relax", "relax_price": "relax_price"}

_DUAL = {"preset": "dual_preset", "dual": "dual", "hidden": "dual_hidden", "init": "dual_init",
         "features": "dual_features", "link": "dual_link", "dual_optimizer": "dual_optimizer", "dual_lr": "dual_lr",
         "dual_beta1": "dual_beta1", "dual_beta2": "dual_beta2"}


@dataclass(frozen=True)
class MethodEntry:
    """One registered method.

    Attributes:
        name: the name users write (`--method lore`).
        options: factory keyword -> the `TrainConfig` field that supplies it.
        summary: one line for help texts.
        authors_updates: encoder updates per adversarial batch in the method's own authors' recipe (FARE's
            RobustVLM `train/adversarial_training_clip.py` and TeCoA's: 1), which `lore` uses by default; None:
            the method takes K (`primal_steps`), as the constrained methods do (Algorithm 1).
        own_margin: the method's constraint bounds ||phi(x) - phi_0(x)||^2 by its own margin (LORE, TeCoA+l2), so
            probes measure "within margin" against that margin; for the others, against rho ||phi_0(x)||^2.
        fixed_weight: the method's constraint enters with a constant weight (`FixedPenalty`: naive), so its
            logged "multiplier" is that weight, not a learned dual variable.
    """

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    authors_updates: Optional[int] = None
    own_margin: bool = False
    fixed_weight: bool = False


METHODS: Mapping[str, MethodEntry] = MappingProxyType({entry.name: entry for entry in (
    MethodEntry("fare", {}, "FARE (paper Eq. 2): unsupervised adversarial embedding loss, unconstrained",
                authors_updates=1),
    MethodEntry("naive", {"weight": "naive_weight"}, "naive regularization (Eq. 3): FARE + fixed lambda",
                fixed_weight=True),
    MethodEntry("lore", {"rho": "rho", **_DUAL, "adaptive_margin": "adaptive_margin",
                                 "penalty": "penalty", "dual_signal": "dual_signal",
                                 "violation_rate": "violation_rate", **_RELAX},
                "LORE (Eq. 7, Algorithm 1): FARE s.t. ||phi - phi_0||^2 <= rho ||phi_0||^2 per sample",
                own_margin=True),
    MethodEntry("tecoa", {}, "TeCoA (Eq. 25): supervised adversarial zero-shot cross-entropy", authors_updates=1),
    MethodEntry("tecoa-l2", {"rho": "rho", **_DUAL, **_RELAX}, "TeCoA + LORE's embedding constraint (App. J.7)",
                own_margin=True),
    MethodEntry("tecoa-kl", {"rho": "rho", **_DUAL, **_RELAX}, "TeCoA + KL(p_0 || p) <= rho H(p_0) (App. J.7)"),
)})
"""Every method, by name, in the paper's order."""

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)

BASELINE_UPDATES: tuple[str, ...] = ("authors", "equal")
"""How many encoder updates per adversarial batch a method with its own authors' recipe (FARE, TeCoA) takes:
theirs (`MethodEntry.authors_updates`, the default), or K like the constrained methods (the equal-updates
control)."""

RELAXATIONS: tuple[str, ...] = ("none", "quadratic", "linear")
"""A constrained method's resilient relaxation (`constrained.relaxation`): none (the hard margin, the paper's),
h(u) = price u^2 / 2 (`Quadratic`), or h(u) = price u (`Linear`: lambda capped at the price)."""

PROBE_SPLITS: tuple[str, ...] = ("test", "validation")
"""Which held-out part of the training data a run's probe (and the main job's evaluation) reads: "validation"
when choosing settings (the digits only), "test" when reporting."""


def method_entry(name: str) -> MethodEntry:
    """The registered method `name`; an unknown name is refused with the known ones."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {METHOD_NAMES}, got {name!r}")
    return METHODS[name]


METHOD_FIELDS: frozenset[str] = frozenset(source for entry in METHODS.values() for source in entry.options.values())
"""The `TrainConfig` fields that some methods take and others ignore (rho, the dual, the penalty, ...)."""


def method_takes(name: str, config_field: str) -> bool:
    """Whether method `name` reads `TrainConfig.<config_field>` (every field outside `METHOD_FIELDS` is read
    by all methods)."""
    return config_field not in METHOD_FIELDS or config_field in method_entry(name).options.values()
