"""Robustness evaluation: APGD-CE / APGD-DLR-T (AutoAttack protocol), Square, noise, corruptions.

Public names are imported lazily (PEP 562), so the torch-free `EvalConfig` loads without torch.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "apgd": ".apgd",
    "apgd_ce": ".apgd",
    "apgd_dlr_targeted": ".apgd",
    "checkpoints": ".apgd",
    "dlr_targeted_loss": ".apgd",
    "CORRUPTIONS": ".corruptions",
    "gaussian_noise": ".corruptions",
    "EvalConfig": ".config",
    "fit_linear_head": ".linear_head",
    "GradientMaskingWarning": ".masking",
    "check_gradient_masking": ".masking",
    "plot_robustness": ".report",
    "write_report": ".report",
    "square_attack": ".square",
    "ATTACKS": ".suite",
    "EvalSettings": ".suite",
    "evaluate": ".suite",
    "format_eps": ".suite",
    "robust_accuracy": ".suite",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """Imports a public name on first use, so that light entry points (`lore --help`) never import torch."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
