"""Training checkpoints: written atomically, read safely, checked before use.

A checkpoint is one `torch.save` file of plain containers and tensors (so it
loads with `weights_only=True`): the encoder, the dual state, both
optimisers, the LR schedule, the position (step, epoch, batch in epoch), the
RNG state, and the run's fingerprint. It is written to a temporary file in
the same folder, flushed to disk, then renamed over the old one, so a crash
never leaves a half-written `last.pt`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

import torch

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "fingerprint", "step", "epoch", "encoder", "optimizer", "scheduler", "dual", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, foreign or from another run."""


def save_atomic(state: dict, path: Union[str, Path]) -> Path:
    """Writes `state` to `path` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Union[str, Path], fingerprint: dict) -> dict:
    """Reads and checks a checkpoint.

    Args:
        path: the checkpoint file.
        fingerprint: the resuming run's `TrainConfig.resume_fingerprint()`.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: the file is truncated or corrupt, is not a lore checkpoint,
            or was written by a run with different settings (the differences are listed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read: {error}") from error
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a lore training checkpoint (missing {missing})")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {state['format_version']}, this lore reads {FORMAT_VERSION}")
    theirs = state["fingerprint"]
    differences = {k: (theirs.get(k), v) for k, v in fingerprint.items() if theirs.get(k) != v}
    if differences:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in differences.items())
        raise CheckpointError(f"checkpoint {path} belongs to a different run ({listed}); use another --output or the same settings")
    return state
