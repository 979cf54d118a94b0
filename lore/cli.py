"""`lore` command line: `lore train`, `lore eval`, `lore plot`.

Only this module reads argparse; it turns flags (or a JSON config file) into
a typed config and calls the library. It imports nothing heavy until a
command runs, so `lore --help` and argument errors answer at once. Every
error about the user's input is one line naming that input, exit code 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Optional, Sequence

from .evaluation.config import EvalConfig
from .presets import DUAL_PRESETS, PRESET_FIELDS, resolve_dual
from .registry import method_names
from .training.config import TrainConfig, unused_reason
from .validation import read_json_object

INPUT_ERROR = 2
INTERRUPTED = 130


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(name: str, default) -> str:
    if name == "eps" and isinstance(default, float):
        from fractions import Fraction

        return str(Fraction(default).limit_denominator(1000))
    return repr(default)


#: Extra spellings of some flags (the issue-tracker and paper-reproduction commands use the short ones).
ALIASES = {"output": ["--out"], "n_samples": ["--samples"]}


def _choices() -> dict:
    """The flags whose values come from a named set that is not a field's `Literal` type (those are read from the
    annotation): the dual presets and the registered methods (read when the parser is built, after plugins
    registered theirs). argparse lists them in the help and refuses others."""
    return {"dual_preset": tuple(DUAL_PRESETS), "method": method_names()}


def _add_config_flags(parser: argparse.ArgumentParser, config_type, aliases: Optional[dict] = None) -> None:
    """One flag per dataclass field; values stay strings/numbers and the config validates them."""
    hints = typing.get_type_hints(config_type)
    choices = _choices()
    aliases = aliases or {}
    for field in dataclasses.fields(config_type):
        hint = hints[field.name]
        help_text = field.metadata.get("help", "")
        if "default" not in help_text:
            help_text += f" (default: {_default_text(field.name, field.default)})"
        flags = [_flag(field.name)] + aliases.get(field.name, [])
        if hint is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
        names = typing.get_args(base) if typing.get_origin(base) is typing.Literal else choices.get(field.name)
        kind = str if field.name == "eps" or names else base  # eps: "4/255"; TrainConfig parses and names it when wrong
        parser.add_argument(*flags, dest=field.name, type=kind, default=None, help=help_text, choices=names,
                            metavar=field.name.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lore", description="Robust fine-tuning of vision encoders (LORE, FARE, TeCoA, ...).")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="fine-tune an encoder (torchrun --nproc_per_node=N -m lore train ... for DDP)",
        description="Fine-tune an image encoder with a robust method. Flags override --config; "
        "defaults are the paper's (AdamW, lr 1e-5, wd 1e-4, cosine schedule, PGD-10 with step eps/4, K=5, dual lr 5e-4).",
    )
    train.add_argument("--config", type=Path, default=None, help="JSON file with TrainConfig keys")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUTPUT/last.pt; only output/device/logging settings may differ from the run's")
    train.add_argument("--plan", action="store_true",
                       help="build the model on the CPU, print the memory a training step will need on one device "
                       "(parameters, gradients, AdamW moments, phi_0, the dual network, activations per image, "
                       "inputs) for these flags, and the most images per pass an 80 GB GPU (or this machine's GPU) "
                       "holds; then exit without training")
    train.add_argument("--print-config", action="store_true",
                       help="print the configuration the flags resolve to (every default and preset value filled in, "
                       "as config.json would record it) and exit without training")
    _add_config_flags(train, TrainConfig)
    evaluate = commands.add_parser(
        "eval", help="evaluate clean and robust accuracy (APGD-CE, APGD-DLR-T, Square, noise, corruptions)",
        description="Evaluate a model, an export folder or a run folder: zero-shot head for CLIP models, a linear head "
        "fitted on clean features otherwise; writes report.json, report.md and robust_accuracy.png. With --benchmark: "
        "the paper's Table 3 over CLIP_benchmark datasets under --data-root, one or more models (comma list), "
        "--samples images per dataset; results are kept per dataset and a re-run resumes; writes report.json, "
        "report.md (the paper's table layout) and benchmark.png.",
    )
    _add_config_flags(evaluate, EvalConfig, ALIASES)
    plot = commands.add_parser("plot", help="draw training curves (PNG) of a run folder")
    plot.add_argument("run_dir", type=Path)
    export = commands.add_parser(
        "export", help="convert a run's open_clip export to another library's layout",
        description="Write a run folder's (or an export folder's) open_clip ViT CLIP as a transformers CLIPModel folder "
        "(--format hf): the fine-tuned image tower, the text tower, the processor and CLIP's tokenizer; "
        "transformers.CLIPModel / CLIPVisionModelWithProjection and `lore --model hf:` load it.")
    export.add_argument("source", type=Path, help="a finished `lore train` run folder or its export/ folder")
    export.add_argument("--format", dest="format", choices=["hf"], required=True,
                        help="hf: transformers' CLIP layout")
    export.add_argument("--output", "--out", dest="output", type=Path, required=True, help="the folder to write")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's `TrainConfig`: --config's keys, overridden by the flags given. A `--dual-preset` flag replaces the
    file's dual values too (a config.json records them resolved), except those also given as flags."""
    values = read_json_object(args.config) if args.config else {}
    if getattr(args, "dual_preset", None) is not None:
        values = {k: v for k, v in values.items() if k not in PRESET_FIELDS}
    for field in dataclasses.fields(TrainConfig):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    resolved = {**{field.name: field.default for field in dataclasses.fields(TrainConfig)}, **values}
    resolved.update(resolve_dual(resolved["dual_preset"], {name: values.get(name) for name in PRESET_FIELDS}))
    for field in dataclasses.fields(TrainConfig):
        why = unused_reason(resolved, field.name) if getattr(args, field.name, None) is not None else None
        if why is not None:
            raise ValueError(f"{_flag(field.name)} does not apply: {why}; leave it out")
    return TrainConfig.from_dict(values)


def _fail(command: str, error: BaseException) -> int:
    print(f"lore {command}: {error}", file=sys.stderr)
    return INPUT_ERROR


def _os_error(error: OSError) -> str:
    """One line for a file-system failure (full disk, read-only or missing output), naming the file."""
    import errno

    where = f" {error.filename}" if error.filename else ""
    reason = error.strerror or str(error)
    advice = {errno.ENOSPC: "; free space and rerun (files are written atomically: earlier ones are intact)",
              errno.EROFS: "; choose an --output on a writable file system",
              errno.EACCES: "; choose an --output you may write to"}.get(error.errno or 0, "")
    return f"cannot write or read{where}: {reason}{advice}"


def _eval(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EvalConfig) if getattr(args, f.name) is not None}
    try:
        config = EvalConfig(**values)
    except ValueError as error:
        return _fail("eval", error)
    if config.benchmark and args.data is not None:
        return _fail("eval", ValueError("give either --data (one dataset) or --benchmark with --data-root, not both"))
    from .data.specs import UnreadableImageError

    try:
        if config.benchmark:
            return _benchmark(config)
        from .evaluation.report import markdown_table
        from .evaluation.run import run_evaluation

        report = run_evaluation(config)
    except (ValueError, FileNotFoundError, ModuleNotFoundError, UnreadableImageError) as error:
        return _fail("eval", error)
    except OSError as error:
        return _fail("eval", OSError(_os_error(error)))
    print(markdown_table(report))
    print(f"wrote {config.output}/report.json, report.md, robust_accuracy.png")
    return 0


def _check_data(config: EvalConfig) -> int:
    from .evaluation.benchmark import check_data

    found = check_data(config.benchmark_list, config.data_root)
    print(f"{'dataset':<16}{'status':<12}{'images':>9}{'release':>9}{'classes':>9}  problem")
    for entry in found:
        images = "—" if entry["images"] is None else str(entry["images"])
        expected = "?" if entry["expected"] is None else str(entry["expected"])
        classes = "—" if entry["classes"] is None else str(entry["classes"])
        print(f"{entry['dataset']:<16}{entry['status']:<12}{images:>9}{expected:>9}{classes:>9}  "
              f"{(entry['problem'] or '').splitlines()[0] if entry['problem'] else ''}")
    unreadable = [e["dataset"] for e in found if e["status"] == "unreadable"]
    if unreadable:
        print(f"lore eval: {len(unreadable)} dataset(s) cannot be read under {config.data_root}: {', '.join(unreadable)}",
              file=sys.stderr)
        return INPUT_ERROR
    return 0


def _benchmark(config: EvalConfig) -> int:
    from .evaluation.benchmark import run_benchmark
    from .evaluation.run import settings_of

    if config.check_data:
        return _check_data(config)

    try:
        run_benchmark(config.model_list, config.benchmark_list, config.data_root, config.output, settings=settings_of(config),
                      samples=config.samples, pretrained=config.pretrained, image_size=config.image_size,
                      baseline=config.baseline, cache_dir=config.cache_dir, device=config.device,
                      linear_head=config.linear_head, head_samples=config.head_samples, workers=config.workers)
    except KeyboardInterrupt:
        print(f"lore eval: interrupted; finished datasets are kept in {config.output}/models/ and a re-run resumes",
              file=sys.stderr)
        return INTERRUPTED
    print((Path(config.output) / "report.md").read_text())
    print(f"wrote {config.output}/report.json, report.md, benchmark.png")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .training.plots import plot_run

    try:
        paths = plot_run(args.run_dir)
    except FileNotFoundError as error:
        return _fail("plot", error)
    for path in paths:
        print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from .models.export import load_export_folder
    from .models.hf_convert import export_open_clip_as_hf

    try:
        source = conversion_source(args.source, args.output)
        built = load_export_folder(source, None, cache_dir=Path("~/.cache/lore").expanduser(), seed=0,
                                   device=torch.device("cpu"))
        folder = export_open_clip_as_hf(built.clip, built.encoder, built.image_size, args.output)
    except (ValueError, OSError) as error:
        return _fail("export", error)
    print(folder)
    return 0


def conversion_source(source: Path, output: Path) -> Path:
    """The open_clip export folder `lore export SOURCE --output OUTPUT` converts, checked: a finished run's (or a
    finished run's export/ given directly, or a standalone export), complete, with its weights; and an OUTPUT
    that is not inside the run or the export.

    Raises:
        ValueError, FileNotFoundError: naming what is wrong and what to do.
    """
    from .evaluation.run import _is_run_folder, _run_status
    from .models.encoders import OPEN_CLIP_WEIGHTS
    from .models.export import check_export_folder
    from .training.config import read_run_config

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


def _train(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        return _fail("train", error)
    if args.print_config:
        import json

        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if args.plan:
        try:
            from .training.memory import print_plan

            print_plan(config)
        except (ValueError, OSError) as error:
            return _fail("train", error)
        return 0
    from .data.specs import UnreadableImageError
    from .training.checkpoint import CheckpointError
    from .training.engine import train

    try:
        result = train(config, resume=args.resume)
    except (CheckpointError, FileExistsError, FileNotFoundError, UnreadableImageError, ValueError) as error:
        return _fail("train", error)
    except FloatingPointError as error:  # the run diverged: not an input error, but no traceback helps either
        print(f"lore train: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        return _fail("train", OSError(_os_error(error)))
    except RuntimeError as error:
        if "DataLoader worker" not in str(error):
            raise
        print(f"lore train: a data-loading process died ({error.args[0].splitlines()[0].strip()}); the last "
              f"checkpoint in {config.output} is intact: --resume continues from it", file=sys.stderr)
        return 1
    if result.status == "interrupted":
        print(f"interrupted at batch {result.step}/{result.total_steps}; checkpoint written, continue with --resume",
              file=sys.stderr)
        return INTERRUPTED
    print(f"finished batches {result.start_step}..{result.step} of {result.total_steps}; outputs in {result.output}")
    return 0


#: Modules of the `lore` extra that every command needs (import names); the base install has only `constrained`.
VISION_STACK = ("torchvision", "open_clip", "timm", "safetensors", "tqdm", "matplotlib", "sklearn", "numpy", "PIL")


def missing_vision_stack() -> list[str]:
    """The modules of `VISION_STACK` that cannot be imported here (found without importing them)."""
    import importlib.util

    return [name for name in VISION_STACK if importlib.util.find_spec(name) is None]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    missing = missing_vision_stack()
    if missing:
        return _fail(args.command, ModuleNotFoundError(
            f"the lore commands need the vision stack, and {', '.join(missing)} cannot be imported: "
            'pip install "lore-constrained[lore]" (the base install is the constrained library alone)'))
    from .devices import torch_pair_problem

    problem = torch_pair_problem()
    if problem is not None:
        return _fail(args.command, RuntimeError(problem))
    return {"eval": _eval, "export": _export, "plot": _plot, "train": _train}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
