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

from ..evaluation.config import EvalConfig
from ..presets import DUAL_PRESETS, PRESET_FIELDS
from ..registry import method_names
from ..training.attacks import training_attack_names
from ..training.config import TrainConfig
from ..validation import read_json_object
from .errors import INTERRUPTED, fail, os_error
from .evaluate import run_eval
from .export import run_export, run_plot



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
    return {"dual_preset": tuple(DUAL_PRESETS), "method": method_names(), "attack": training_attack_names()}


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
    file's dual values too (a config.json records them resolved), except those also given as flags. A flag that
    takes no part in the run is refused by name, even at its default (`TrainConfig._check_unused`)."""
    values = read_json_object(args.config) if args.config else {}
    if getattr(args, "dual_preset", None) is not None:
        values = {k: v for k, v in values.items() if k not in PRESET_FIELDS}
    given = [field.name for field in dataclasses.fields(TrainConfig) if getattr(args, field.name, None) is not None]
    values.update({name: getattr(args, name) for name in given})
    return TrainConfig.from_dict(values, given=given)


def _train(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        return fail("train", error)
    if args.print_config:
        import json

        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if args.plan:
        try:
            from ..training.memory import print_plan

            print_plan(config)
        except (ValueError, OSError) as error:
            return fail("train", error)
        return 0
    from ..data.specs import UnreadableImageError
    from ..training.checkpoint import CheckpointError
    from ..training.engine import train

    try:
        result = train(config, resume=args.resume)
    except (CheckpointError, FileExistsError, FileNotFoundError, UnreadableImageError, ValueError) as error:
        return fail("train", error)
    except FloatingPointError as error:  # the run diverged: not an input error, but no traceback helps either
        print(f"lore train: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        return fail("train", OSError(os_error(error)))
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
        return fail(args.command, ModuleNotFoundError(
            f"the lore commands need the vision stack, and {', '.join(missing)} cannot be imported: "
            'pip install "lore-constrained[lore]" (the base install is the constrained library alone)'))
    from ..devices import torch_pair_problem

    problem = torch_pair_problem()
    if problem is not None:
        return fail(args.command, RuntimeError(problem))
    return {"eval": run_eval, "export": run_export, "plot": run_plot, "train": _train}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
