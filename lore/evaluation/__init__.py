"""Robustness evaluation: APGD-CE / APGD-DLR-T (AutoAttack protocol), Square, noise, corruptions.

Public names are imported lazily (PEP 562), so the torch-free `EvalConfig` loads without torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
