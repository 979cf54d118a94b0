"""The training engine behind `lore train`: configuration, data, checkpoints, DDP, probes, curves.

    from lore.training import TrainConfig, train
    result = train(TrainConfig(method="lore", eps=4 / 255, max_steps=100, output="runs/x"))

Public names are imported on first use (PEP 562), so the torch-free `TrainConfig` loads without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointError", "RunResult", "TrainConfig", "cosine_with_warmup", "make_method", "plot_run", "probe", "train",
]


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from . import config as home
    elif name in ("RunResult", "train", "make_method", "cosine_with_warmup"):
        from . import engine as home
    elif name == "CheckpointError":
        from . import checkpoint as home
    elif name == "plot_run":
        from . import plots as home
    elif name == "probe":
        from . import probe as home
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(home, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
