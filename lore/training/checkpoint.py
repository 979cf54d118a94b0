"""Training checkpoints: written atomically, read safely, checked before use.

A checkpoint is one `torch.save` file of plain containers and tensors (so it
loads with `weights_only=True`): the encoder, the dual state, both
optimisers, the LR schedule, the position (step, epoch, batch in epoch), the
RNG state, and the run's fingerprint. It is written to a temporary file in
the same folder, flushed to disk, then renamed over the old one, so a crash
never leaves a half-written `last.pt`; temporaries left by a killed writer
are removed by the next write (and by `remove_stale_temporaries`).

Reading checks the CRC-32 of every record of the file's zip container
first: `torch.load` does not, so a flipped bit inside a tensor would
otherwise load silently as different weights.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Union

import torch

FORMAT_VERSION = 2  # 2: the fingerprint holds every training-shaping setting and the world size
REQUIRED_KEYS = ("format_version", "fingerprint", "step", "epoch", "encoder", "optimizer", "scheduler", "dual", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, foreign or from another run."""


def remove_stale_temporaries(path: Union[str, Path]) -> list[Path]:
    """Deletes temporaries of `path` left behind by a writer that was killed; returns them.

    Only one process writes a run's checkpoint, so any temporary present when it starts to write is stale.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for temporary in stale:
        temporary.unlink(missing_ok=True)
    return stale


def save_atomic(state: dict, path: Union[str, Path]) -> Path:
    """Writes `state` to `path` via a temporary file and an atomic rename; `path` is untouched on failure.

    Raises:
        OSError: the write failed (ENOSPC when the disk is full), naming `path`; the temporary is removed.
        lore.files.SymlinkRefused: `path` is a symbolic link."""
    from ..files import refuse_symlink

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_symlink(path)
    remove_stale_temporaries(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            try:
                torch.save(state, handle)
            except RuntimeError as error:  # torch's zip writer reports a short write (full disk) as a RuntimeError
                full = shutil.disk_usage(path.parent).free < (1 << 20)
                code = errno.ENOSPC if full else errno.EIO
                raise OSError(code, f"{os.strerror(code)} while writing the checkpoint ({str(error).splitlines()[0]})", str(path)) from None
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
    verify_integrity(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read: {error}") from error
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a lore training checkpoint (missing {missing})")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {state['format_version']}, this lore reads {FORMAT_VERSION}")
    if not isinstance(state["fingerprint"], dict):
        raise CheckpointError(f"{path} is not a lore training checkpoint (its fingerprint is not a record)")
    theirs = state["fingerprint"]
    differences = {k: (theirs.get(k, "(not recorded)"), v) for k, v in fingerprint.items() if theirs.get(k, "(not recorded)") != v}
    if differences:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in differences.items())
        raise CheckpointError(f"checkpoint {path} was written with other settings ({listed}); a resumed run must keep "
                              "every setting that shapes training (see docs/training.md): resume with the run's own "
                              "settings, or start a new run in another --output")
    return state


def check_inputs(state: dict, inputs: dict, path: Union[str, Path]) -> None:
    """Refuses to resume on other inputs than the checkpoint's run read: `inputs` is {"data": the training data's
    fingerprint (files' sizes and modification times, labels), "model": the starting model's (`model_fingerprint`)}.

    Raises:
        CheckpointError: naming what changed (or that the checkpoint recorded no inputs).
    """
    theirs = state["fingerprint"].get("inputs")
    if theirs is None:
        raise CheckpointError(f"checkpoint {path} records no fingerprint of its data and model (written by an older "
                              "lore), so a resume cannot check they are unchanged; start a new run")
    changed = [name for name in inputs if theirs.get(name) != inputs[name]]
    if changed:
        described = {"data": "the training data (its files, their sizes or modification times, or its labels)",
                     "model": "the starting model (its weights, config, processor or tokenizer files)"}
        raise CheckpointError(f"checkpoint {path} was trained on other inputs: {' and '.join(described.get(n, n) for n in changed)}"
                              " changed since the run started; resuming would continue on them as if nothing had. "
                              "Restore the run's inputs, or start a new run in another --output")


def verify_integrity(path: Union[str, Path]) -> None:
    """Raises `CheckpointError` unless every record of the zip container at `path` matches its CRC-32."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as error:  # BadZipFile, OSError, EOFError, zlib/struct errors from a damaged header
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read: {error}") from error
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: record {damaged!r} fails its CRC check (a flipped bit "
                              "on disk?); it cannot be trusted. Restore a copy or start the run again")
