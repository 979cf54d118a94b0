"""Robustness evaluation: the suite (APGD-CE / APGD-DLR-T by the AutoAttack protocol, Square, noise,
corruptions), linear heads, reports, and the paper's zero-shot benchmark (`run_benchmark`).

The attacks themselves are `lore.attacks`, the benchmark datasets and their class names `lore.data`.
Public names are imported on first use (PEP 562), so the torch-free `EvalConfig` loads without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AttackEntry", "EvalConfig", "EvalSettings", "attack_names", "evaluate", "fit_linear_head", "plot_robustness",
    "register_attack", "robust_accuracy", "run_benchmark", "write_report",
]


def __getattr__(name: str) -> Any:
    if name == "EvalConfig":
        from . import config as home
    elif name in ("AttackEntry", "attack_names", "register_attack"):
        from . import attacks as home
    elif name == "run_benchmark":
        from . import benchmark as home
    elif name == "fit_linear_head":
        from . import linear_head as home
    elif name in ("plot_robustness", "write_report"):
        from . import report as home
    elif name in ("EvalSettings", "evaluate", "robust_accuracy"):
        from . import suite as home
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(home, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
