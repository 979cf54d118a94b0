"""A run's folder: which files a run writes, refusing to mix two runs, and the metrics a resume must drop.

Every path a run writes is listed in `RUN_WRITES`, so a symbolic link planted at any of them is refused before
training starts (`lore.files.refuse_symlink`), not after hours of work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch

from ..data.unreadable import UNREADABLE_LIST
from ..files import read_own_text, refuse_symlink
from ..jsonio import write_json, write_text_atomic
from ..validation import read_json_object
from .checkpoint import load_checkpoint, remove_stale_temporaries
from .config import TrainConfig

LAST = "last.pt"  #: the checkpoint a resume continues from
PROBE_FILES = "probe_images.txt"  #: the images held out of a --data folder for the probe, one path per line
#: what a finished or interrupted run leaves in its folder besides the checkpoint
RUN_FILES = ("metrics.jsonl", "summary.json", "export")
#: every path a run writes in its folder (`lore.files` refuses a symbolic link at any of them)
RUN_WRITES = ("config.json", LAST, *RUN_FILES, UNREADABLE_LIST, PROBE_FILES, "training_curves.png")


def earlier_run_files(output: Path) -> list[str]:
    """The files of an earlier run in `output` (see `RUN_FILES`) that a new run there would mix with."""
    return [name for name in RUN_FILES if (output / name).exists()]


def prepare_output(output: Path, config_record: dict, *, resume: bool, is_main: bool,
                   fingerprint: dict) -> Optional[dict]:
    """Checks the output folder (refusing to mix runs) and loads the checkpoint to resume; rank 0 writes
    config.json (`config_record`). Returns the checkpoint's state on `resume`, else None."""
    checkpoint_path = output / LAST
    state = None
    for name in RUN_WRITES:  # a link planted where the run will write is refused now, not after training
        refuse_symlink(output / name)
    if resume:
        state = load_checkpoint(checkpoint_path, fingerprint)  # refuses any change it could not honour
    elif is_main and checkpoint_path.exists():
        raise FileExistsError(f"{checkpoint_path} exists: pass --resume to continue it, or choose another --output")
    elif is_main and (earlier := earlier_run_files(output)):
        raise FileExistsError(f"{output} holds an earlier run's {', '.join(earlier)} and no checkpoint to resume from; "
                              "a new run would mix with them: choose another --output, or delete them first")
    if is_main:
        output.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(checkpoint_path)
        write_json(output / "config.json", config_record)
    return state


def drop_metrics_after(path: Path, step: int) -> None:
    """Keeps only the records of batches up to `step` (the checkpoint a resume continues from): the batches
    after it are trained again and logged again, so their old records would appear twice."""
    if not (path.exists() or path.is_symlink()):
        return
    kept = []
    for line in read_own_text(path).splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line torn by the interruption
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def restart_advice(checkpoint_path: Path) -> str:
    """What is left to restart from, checked rather than assumed, and how to restart with other settings."""
    new_run = ("A --resume keeps the run's settings (it would repeat this); start a new run with a lower --lr or "
               "--dual-lr and another --output.")
    if not checkpoint_path.is_file():
        return f"No checkpoint was written yet ({checkpoint_path} does not exist). " + new_run
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        finite = all(torch.isfinite(v).all() for v in state["encoder"].values() if v.is_floating_point())
        where = f"{checkpoint_path} (batch {state['step']})"
    except Exception as error:  # any unreadable file is reported, not raised over the real failure
        return f"The checkpoint {checkpoint_path} cannot be read ({error}). " + new_run
    if not finite:
        return f"The last checkpoint, {where}, already holds non-finite weights. " + new_run
    return f"The last checkpoint, {where}, holds finite weights. " + new_run


def read_run_config(folder: Union[str, Path]) -> TrainConfig:
    """The `TrainConfig` a `lore train` run folder recorded (config.json), checked.

    Raises:
        ValueError: naming the file and what is wrong with it. FileNotFoundError: no config.json.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: it is not a `lore train` run folder")
    try:
        return TrainConfig.from_dict(read_json_object(path))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} is not the config.json `lore train` writes: {error}") from None
