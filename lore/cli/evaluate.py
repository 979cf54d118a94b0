"""`lore eval`: one dataset (`--data`), the paper's benchmark (`--benchmark`), or its data check."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..evaluation.config import EvalConfig
from .errors import INPUT_ERROR, INTERRUPTED, fail, os_error


def run_eval(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EvalConfig) if getattr(args, f.name) is not None}
    try:
        config = EvalConfig(**values)
    except ValueError as error:
        return fail("eval", error)
    if config.benchmark and args.data is not None:
        return fail("eval", ValueError("give either --data (one dataset) or --benchmark with --data-root, not both"))
    from ..data.specs import UnreadableImageError

    try:
        if config.benchmark:
            return _benchmark(config)
        from ..evaluation.report import markdown_table
        from ..evaluation.run import run_evaluation

        report = run_evaluation(config)
    except (ValueError, FileNotFoundError, ModuleNotFoundError, UnreadableImageError) as error:
        return fail("eval", error)
    except OSError as error:
        return fail("eval", OSError(os_error(error)))
    print(markdown_table(report))
    print(f"wrote {config.output}/report.json, report.md, robust_accuracy.png")
    return 0


def _check_data(config: EvalConfig) -> int:
    from ..evaluation.benchmark import check_data

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
    from ..evaluation.benchmark import run_benchmark
    from ..evaluation.run import settings_of

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
