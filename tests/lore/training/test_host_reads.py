"""The training loop reads the device once per batch: counted on a CPU, where a GPU would wait each time.

`count_host_reads` (benchmarks/host_reads.py; benchmarks/gpu.py uses it too) records every `item`,
`tolist`, `bool`, `float`, `int`, index and `torch.cuda.synchronize` made while `lore.training.engine.train`
runs. Runs of 2 and 5 batches differ only by their 3 extra batches (both build, probe at batch 0 and at the
end, and export the same), so the difference over 3 is the reads of one batch at the default settings
(metrics logged every batch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from host_reads import count_host_reads  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
from lore.training.config import TrainConfig  # noqa: E402
from lore.training.engine import train  # noqa: E402


def _reads(tmp_path, cache, steps: int, **settings) -> list:
    def config(name: str, steps: int) -> TrainConfig:
        return TrainConfig(output=str(tmp_path / name), cache_dir=str(cache), max_steps=steps, device="cpu",
                           batch_size=16, eps=8 / 255, **settings)

    if not (tmp_path / "warm").exists():
        train(config("warm", 1))  # builds (and caches) the digits model outside the count
    with count_host_reads() as reads:
        train(config(f"run{steps}", steps))
    return list(reads.sites)


@pytest.mark.parametrize("method, most", [("lore", 3), ("fare", 2)])
def test_a_training_batch_reads_the_device_at_most_once_or_twice(tmp_path, lore_cache, method, most):
    short, long = _reads(tmp_path, lore_cache, 2, method=method), _reads(tmp_path, lore_cache, 5, method=method)
    per_batch = (len(long) - len(short)) / 3
    extra = list(long)
    for site in short:  # what the 3 extra batches added, by call site
        extra.remove(site) if site in extra else None
    assert per_batch <= most, f"{per_batch} reads per batch: {extra}"
    assert per_batch >= 1  # the count sees the loop's own read (it can fail)


def test_eager_checks_read_more_than_the_default(tmp_path, lore_cache):
    """--eager-checks restores a read at every check: the counter sees them."""
    short = _reads(tmp_path, lore_cache, 2, eager_checks=True)
    long = _reads(tmp_path, lore_cache, 5, eager_checks=True)
    assert (len(long) - len(short)) / 3 > 5
