"""The registry of methods: the one list of method names, what each reads and what builds it (torch-free).

The command line (`lore train --method`), `TrainConfig` (its accepted names and the fields each method
reads), the engine and `lore.methods.build_method` all read `METHODS` here. To add a method, register a
`MethodEntry` with its factory, from Python or from a plugin (`lore.plugins`), through `register_method`:
the built-ins below register themselves the same way. Nothing outside this module special-cases a name.

This module imports nothing of torch and, of lore, only the torch-free `lore.plugins` and `lore.presets`:
`lore --help` and config validation stay free of torch. A factory is named by a "module:attribute" string, imported when a method is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Union

from .plugins import check_new_name, load_plugins
from .presets import DUAL_FIELDS

#: the option value that hands a method its whole dual (`lore.presets.DualSettings`, `TrainConfig.dual_settings`)
DUAL_SETTINGS = "dual_settings"
#: the `TrainConfig` fields a `DUAL_SETTINGS` option reads (so the command line refuses them for other methods)
DUAL_SETTINGS_FIELDS: tuple[str, ...] = ("dual_preset", *DUAL_FIELDS.values())

_RELAX = {"relax": "relax", "relax_price": "relax_price"}


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
        factory: what builds the method (a `lore.methods.Method`) from the keywords of `options`: a callable,
            or a "module:attribute" string imported when the method is first built.
    """

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    authors_updates: Optional[int] = None
    own_margin: bool = False
    fixed_weight: bool = False
    factory: Union[str, Callable[..., Any], None] = None


_REGISTERED: dict[str, MethodEntry] = {}

METHODS: Mapping[str, MethodEntry] = MappingProxyType(_REGISTERED)
"""Every registered method, by name, the built-ins first in the paper's order (a live, read-only view; read
it through `method_names` or `method_entry` so that plugins are loaded first)."""


def register_method(entry: MethodEntry, *, replace: bool = False) -> MethodEntry:
    """Adds `entry` to `METHODS`, so that `lore train --method NAME`, `TrainConfig` and the engine accept it.

    Args:
        entry: the method; its `options` map factory keywords to existing `TrainConfig` fields (a method reads
            the settings the command line already has; the others given to it are refused, as for the built-ins),
            or to `DUAL_SETTINGS` for the whole dual as one `lore.presets.DualSettings`.
        replace: replace a method of the same name (otherwise a second registration is refused).

    Raises:
        ValueError: a name that is not lower-case words joined by "-", one ending in "-k" (the main job's
            equal-updates label), a taken name, a missing factory, or options that are not strings.
    """
    name = entry.name
    check_new_name("method", name, _REGISTERED, replace)
    if name.endswith("-k"):
        raise ValueError(f"a method name does not end in '-k' (the main job's label for K updates), got {name!r}")
    if entry.factory is None:
        raise ValueError(f"method {name!r} has no factory (a callable or a 'module:attribute' string)")
    bad = {k: v for k, v in entry.options.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise ValueError(f"method {name!r}: options map factory keywords to TrainConfig field names, got {bad}")
    if entry.authors_updates is not None and (isinstance(entry.authors_updates, bool) or entry.authors_updates < 1):
        raise ValueError(f"method {name!r}: authors_updates must be None or >= 1, got {entry.authors_updates!r}")
    _REGISTERED[name] = entry
    return entry


for _entry in (
    MethodEntry("fare", {}, "FARE (paper Eq. 2): unsupervised adversarial embedding loss, unconstrained",
                authors_updates=1, factory="lore.methods:fare"),
    MethodEntry("naive", {"weight": "naive_weight"}, "naive regularization (Eq. 3): FARE + fixed lambda",
                fixed_weight=True, factory="lore.methods:naive"),
    MethodEntry("lore", {"rho": "rho", "dual": DUAL_SETTINGS, "adaptive_margin": "adaptive_margin",
                         "penalty": "penalty", "dual_signal": "dual_signal",
                         "violation_rate": "violation_rate", **_RELAX},
                "LORE (Eq. 7, Algorithm 1): FARE s.t. ||phi - phi_0||^2 <= rho ||phi_0||^2 per sample",
                own_margin=True, factory="lore.methods:lore"),
    MethodEntry("tecoa", {}, "TeCoA (Eq. 25): supervised adversarial zero-shot cross-entropy", authors_updates=1,
                factory="lore.methods:tecoa"),
    MethodEntry("tecoa-l2", {"rho": "rho", "dual": DUAL_SETTINGS, **_RELAX}, "TeCoA + LORE's embedding constraint (App. J.7)",
                own_margin=True, factory="lore.methods:tecoa_l2"),
    MethodEntry("tecoa-kl", {"rho": "rho", "dual": DUAL_SETTINGS, **_RELAX}, "TeCoA + KL(p_0 || p) <= rho H(p_0) (App. J.7)",
                factory="lore.methods:tecoa_kl"),
):
    register_method(_entry)

BUILTIN_METHODS: tuple[str, ...] = tuple(_REGISTERED)
"""The methods `lore` ships, in the paper's order (plot colours and markers are assigned in this order)."""


def method_names() -> tuple[str, ...]:
    """Every registered method's name, the built-ins first, after loading the installed plugins."""
    load_plugins()
    return tuple(_REGISTERED)

def method_entry(name: str) -> MethodEntry:
    """The registered method `name` (plugins loaded first); an unknown name is refused with the known ones."""
    names = method_names()
    if name not in names:
        raise ValueError(f"method must be one of {names}, got {name!r}")
    return _REGISTERED[name]


def method_fields() -> frozenset[str]:
    """The `TrainConfig` fields that some methods take and others ignore (rho, the dual, the penalty, ...)."""
    return frozenset(field for name in method_names() for field in _fields_read(_REGISTERED[name]))


def method_takes(name: str, config_field: str) -> bool:
    """Whether method `name` reads `TrainConfig.<config_field>` (every field outside `method_fields()` is read
    by all methods)."""
    return config_field not in method_fields() or config_field in _fields_read(method_entry(name))


def _fields_read(entry: MethodEntry) -> tuple[str, ...]:
    """The `TrainConfig` fields behind `entry.options` (a `DUAL_SETTINGS` option reads every dual field)."""
    return tuple(field for source in entry.options.values()
                 for field in (DUAL_SETTINGS_FIELDS if source == DUAL_SETTINGS else (source,)))
