"""The training engine behind `lore train`: configuration, data, checkpoints, DDP, probes, curves.

    from lore.training import TrainConfig, train
    result = train(TrainConfig(method="lore", eps=4 / 255, max_steps=100, output="runs/x"))

Public names are imported on first use (PEP 562), so the torch-free `TrainConfig` loads without torch.
"""

from __future__ import annotations

from ..plugins import lazy_exports

#: every public name and the module that defines it, imported on first use (`lore.plugins.lazy_exports`)
EXPORTS = {
    "TrainConfig": "lore.training.config:TrainConfig",
    "RunResult": "lore.training.engine:RunResult",
    "train": "lore.training.engine:train",
    "cosine_with_warmup": "lore.training.assembly:cosine_with_warmup",
    "CheckpointError": "lore.training.checkpoint:CheckpointError",
    "plot_run": "lore.training.plots:plot_run",
    "probe": "lore.training.probe:probe",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), EXPORTS)
