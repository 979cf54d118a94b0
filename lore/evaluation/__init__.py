"""Robustness evaluation: APGD-CE / APGD-DLR-T (AutoAttack protocol), Square, noise, corruptions, and the
paper's zero-shot benchmark (`run_benchmark`, `zero_shot_metadata`, `build_benchmark_dataset`).

The attacks live in `lore.attacks` and the benchmark datasets in `lore.data`; their names are served here
too, as before. Public names are imported lazily (PEP 562), so the torch-free `EvalConfig` loads without torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_HOMES = {
    "apgd": "..attacks.auto_pgd",
    "apgd_ce": "..attacks.auto_pgd",
    "apgd_dlr_targeted": "..attacks.auto_pgd",
    "checkpoints": "..attacks.auto_pgd",
    "dlr_targeted_loss": "..attacks.auto_pgd",
    "CORRUPTIONS": "..attacks.corruptions",
    "gaussian_noise": "..attacks.corruptions",
    "GradientMaskingWarning": "..attacks.masking",
    "check_gradient_masking": "..attacks.masking",
    "square_attack": "..attacks.square",
    "BenchmarkDataMissing": "..data.release_files",
    "LAYOUTS": "..data.release_files",
    "build_benchmark_dataset": "..data.benchmark",
    "PAPER_DATASETS": "..data.zero_shot",
    "ZERO_SHOT_DATASETS": "..data.zero_shot",
    "zero_shot_metadata": "..data.zero_shot",
    "format_eps": "..units",
    "EvalConfig": ".config",
    "run_benchmark": ".benchmark",
    "fit_linear_head": ".linear_head",
    "plot_robustness": ".report",
    "write_report": ".report",
    "ATTACKS": ".suite",
    "EvalSettings": ".suite",
    "evaluate": ".suite",
    "robust_accuracy": ".suite",
}

__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
