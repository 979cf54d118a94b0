"""`lore plot` (a run's training curves) and `lore export` (a run's open_clip export as a transformers folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import fail


def run_plot(args: argparse.Namespace) -> int:
    from ..training.plots import plot_run

    try:
        paths = plot_run(args.run_dir)
    except FileNotFoundError as error:
        return fail("plot", error)
    for path in paths:
        print(path)
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from ..models.export import load_export_folder
    from ..models.hf_convert import export_open_clip_as_hf

    try:
        source = conversion_source(args.source, args.output)
        built = load_export_folder(source, None, cache_dir=Path("~/.cache/lore").expanduser(), seed=0,
                                   device=torch.device("cpu"))
        folder = export_open_clip_as_hf(built.clip, built.encoder, built.image_size, args.output)
    except (ValueError, OSError) as error:
        return fail("export", error)
    print(folder)
    return 0


def conversion_source(source: Path, output: Path) -> Path:
    """The open_clip export folder `lore export SOURCE --output OUTPUT` converts, checked: a finished run's (or a
    finished run's export/ given directly, or a standalone export), complete, with its weights; and an OUTPUT
    that is not inside the run or the export.

    Raises:
        ValueError, FileNotFoundError: naming what is wrong and what to do.
    """
    from ..evaluation.run import _is_run_folder, _run_status
    from ..models.encoders import OPEN_CLIP_WEIGHTS
    from ..models.export import check_export_folder
    from ..training.run_folder import read_run_config

    run = source if (source / "config.json").is_file() and not (source / "open_clip_config.json").is_file() else None
    if run is None and (source.parent / "summary.json").is_file() and source.name == "export":
        run = source.parent
    export = source / "export" if run is source else source
    if run is not None:
        status = _run_status(run)
        if status != "finished" or not _is_run_folder(run):
            raise ValueError(f"{run} is a `lore train` run that did not finish ({status}): its export/ is missing or an "
                             f"earlier run's; finish it with `lore train --resume --output {run}` first")
        read_run_config(run)
    check_export_folder(export)
    if not (export / "open_clip_config.json").is_file():
        raise ValueError(f"{export} holds no open_clip export (open_clip_config.json); --format hf converts open_clip "
                         "models (an hf: run's export already is a transformers folder)")
    if not (export / OPEN_CLIP_WEIGHTS).is_file():
        raise FileNotFoundError(f"{export} holds no {OPEN_CLIP_WEIGHTS}: there are no trained weights to convert")
    target = output.expanduser().resolve()
    for owner in filter(None, (run, export)):
        owner = owner.resolve()
        if target == owner or owner in target.parents:
            raise ValueError(f"--output {output} lies inside {owner}: write the conversion to a new folder outside "
                             "the run (it would mix two libraries' files, or replace the run's own config.json)")
    return export
