"""Run by torchrun in tests/pipeline/test_ddp_runs.py: `lore train` with a fault on rank 1 only.

    python -m torch.distributed.run --nproc_per_node=2 tests/pipeline/rank_faults.py FAULT OUTPUT -- TRAIN FLAGS

FAULT is "nan" (rank 1's images turn NaN from batch 2 on: a corrupt shard on one rank) or "collapse" (rank 1's
multiplier reads as collapsed from batch 0 on, its patience lowered to 3 batches). Each rank writes the error
it stopped with to OUTPUT/rank<R>.txt and exits 1, or exits 0 if it trained to the end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from lore.cli import build_parser, config_from_args
from lore.training import assembly, engine, health

fault, output, flags = sys.argv[1], Path(sys.argv[2]), sys.argv[4:]
rank = int(os.environ["RANK"])
if rank == 1 and fault == "nan":
    step_call = assembly.RobustStep.__call__
    calls = {"n": 0}

    def poisoned(self, images, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:
            images = torch.full_like(images, float("nan"))
        return step_call(self, images, *args, **kwargs)

    assembly.RobustStep.__call__ = poisoned
elif fault == "collapse":
    health.COLLAPSE_PATIENCE = 3
    if rank == 1:
        local_flags = health.stop_flags

        def collapsed(result, signalled):
            flags = local_flags(result, signalled)
            flags[2] = 1.0  # this rank alone sees lambda ~ 0 with most of its rows violating
            return flags

        health.stop_flags = collapsed
config = config_from_args(build_parser().parse_args(["train", "--output", str(output / "run"), *flags]))
try:
    engine.train(config)
except (FloatingPointError, ValueError) as error:
    (output / f"rank{rank}.txt").write_text(str(error))
    sys.exit(1)
