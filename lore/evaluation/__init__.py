"""Robustness evaluation: APGD-CE / APGD-DLR-T (AutoAttack protocol), Square, noise, corruptions, and the
paper's zero-shot benchmark (`run_benchmark`, `zero_shot_metadata`, `build_benchmark_dataset`).

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
    "run_benchmark": ".benchmark",
    "BenchmarkDataMissing": ".datasets",
    "LAYOUTS": ".datasets",
    "build_benchmark_dataset": ".datasets",
    "PAPER_DATASETS": ".zero_shot",
    "ZERO_SHOT_DATASETS": ".zero_shot",
    "zero_shot_metadata": ".zero_shot",
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
