"""Robustness evaluation: the suite (APGD-CE / APGD-DLR-T by the AutoAttack protocol, Square, noise,
corruptions), linear heads, reports, and the paper's zero-shot benchmark (`run_benchmark`).

The attacks themselves are `lore.attacks`, the benchmark datasets and their class names `lore.data`.
Public names are imported on first use (PEP 562), so the torch-free `EvalConfig` loads without torch.
"""

from __future__ import annotations

from ..plugins import lazy_exports

#: every public name and the module that defines it, imported on first use (`lore.plugins.lazy_exports`)
EXPORTS = {
    "EvalConfig": "lore.evaluation.config:EvalConfig",
    "AttackEntry": "lore.evaluation.attacks:AttackEntry",
    "attack_names": "lore.evaluation.attacks:attack_names",
    "register_attack": "lore.evaluation.attacks:register_attack",
    "run_benchmark": "lore.evaluation.benchmark:run_benchmark",
    "fit_linear_head": "lore.evaluation.linear_head:fit_linear_head",
    "plot_robustness": "lore.evaluation.report:plot_robustness",
    "write_report": "lore.evaluation.report:write_report",
    "EvalReport": "lore.evaluation.suite:EvalReport",
    "EvalSettings": "lore.evaluation.suite:EvalSettings",
    "evaluate": "lore.evaluation.suite:evaluate",
    "robust_accuracy": "lore.evaluation.suite:robust_accuracy",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), EXPORTS)
