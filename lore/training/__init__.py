"""The training engine behind `lore train`: configuration, data, checkpoints, DDP, probes, curves.

    from lore.training import TrainConfig, train
    result = train(TrainConfig(method="lore", eps=4 / 255, max_steps=100, output="runs/x"))

Public names are imported lazily (PEP 562), so the torch-free `TrainConfig` loads without torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_HOMES = {
    "TrainConfig": ".config",
    "parse_eps": "..units",
    "RunResult": ".engine",
    "train": ".engine",
    "make_method": ".engine",
    "cosine_with_warmup": ".engine",
    "CheckpointError": ".checkpoint",
    "build_dataset": "..data.images",
    "plot_run": ".plots",
    "probe": ".probe",
}

__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
