"""`lore` command line: `lore train`, `lore plot`.

Only this module reads argparse; it turns flags (or a JSON config file) into
a `TrainConfig` and calls the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Optional, Sequence

from .config import TrainConfig, parse_eps, read_json_object


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser, config_type=TrainConfig) -> None:
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        hint = hints[field.name]
        default = field.default
        help_text = f"{field.metadata.get('help', '')} (default: {default!r})"
        if hint is bool:
            parser.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
        kind = parse_eps if field.name == "eps" and config_type is TrainConfig else base
        parser.add_argument(_flag(field.name), type=kind, default=None, help=help_text, metavar=field.name.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lore", description="Robust fine-tuning of vision encoders (LORE, FARE, TeCoA, ...).")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="fine-tune an encoder (torchrun --nproc_per_node=N -m lore train ... for DDP)",
        description="Fine-tune an image encoder with a robust method. Flags override --config; "
        "defaults are the paper's (AdamW, lr 1e-5, wd 1e-4, cosine schedule, PGD-10 with step eps/4, K=5, dual lr 5e-4).",
    )
    train.add_argument("--config", type=Path, default=None, help="JSON file with TrainConfig keys")
    train.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    _add_config_flags(train)
    from .evaluation.run import EvalConfig

    evaluate = commands.add_parser(
        "eval", help="evaluate clean and robust accuracy (APGD-CE, APGD-DLR-T, Square, noise, corruptions)",
        description="Evaluate a model, an export folder or a run folder: zero-shot head for CLIP models, a linear head "
        "fitted on clean features otherwise; writes report.json, report.md and robust_accuracy.png.",
    )
    _add_config_flags(evaluate, EvalConfig)
    plot = commands.add_parser("plot", help="draw training curves (PNG) of a run folder")
    plot.add_argument("run_dir", type=Path)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = read_json_object(args.config) if args.config else {}
    for field in dataclasses.fields(TrainConfig):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    return TrainConfig.from_dict(values)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval":
        from .evaluation.run import EvalConfig, run_evaluation
        from .evaluation.report import markdown_table

        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EvalConfig) if getattr(args, f.name) is not None}
        try:
            config = EvalConfig(**values)
            config.settings()
        except ValueError as error:
            print(f"lore eval: {error}", file=sys.stderr)
            return 2
        report = run_evaluation(config)
        print(markdown_table(report))
        print(f"wrote {config.output}/report.json, report.md, robust_accuracy.png")
        return 0
    if args.command == "plot":
        from .plots import plot_run

        for path in plot_run(args.run_dir):
            print(path)
        return 0
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        print(f"lore train: {error}", file=sys.stderr)
        return 2
    from .checkpoint import CheckpointError
    from .engine import train

    try:
        result = train(config, resume=args.resume)
    except (CheckpointError, FileExistsError, FileNotFoundError, FloatingPointError) as error:
        print(f"lore train: {error}", file=sys.stderr)
        return 1
    if result.status == "interrupted":
        print(f"interrupted at batch {result.step}/{result.total_steps}; checkpoint written, continue with --resume",
              file=sys.stderr)
        return 130
    print(f"finished {result.total_steps} batches; outputs in {result.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
