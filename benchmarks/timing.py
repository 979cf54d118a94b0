"""The shared timing helpers of the benchmarks: one timed call, interleaved repeats, peak memory.

Every benchmark measures its candidates side by side in one run, interleaved round-robin so that drift on a
shared machine hits all alike, and reports medians; the ratios of those medians are the results.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_samples(tasks: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                        warmup: int = 1) -> dict[str, list[float]]:
    """Runs every task `warmup` times, then `repeats` round-robin rounds; every round's seconds per task."""
    for _ in range(warmup):
        for fn in tasks.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, fn in tasks.items():
            samples[name].append(timed(fn, device))
    return samples


def interleaved_medians(tasks: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Runs every task once to warm up, then `repeats` round-robin rounds; the median seconds per task."""
    return {name: statistics.median(values) for name, values in interleaved_samples(tasks, repeats, device).items()}


def relative_spread(values: list[float]) -> float:
    """Half the interquartile range over the median: the +- a median of these samples carries (0 for < 4 samples
    would claim too much, so the half-range of all samples is used then)."""
    ordered = sorted(values)
    median = statistics.median(ordered)
    if len(ordered) >= 4:
        quartiles = statistics.quantiles(ordered, n=4, method="inclusive")
        half = (quartiles[2] - quartiles[0]) / 2
    else:
        half = (ordered[-1] - ordered[0]) / 2
    return half / median if median > 0 else float("nan")


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median of the distribution `values` were drawn from.

    The interval between the j-th smallest and the j-th largest sample covers the median with probability
    1 - 2 P(Binomial(n, 1/2) < j), whatever the distribution (independent samples); j is the largest with
    that coverage >= `confidence`.

    Args:
        values: n independent samples (e.g. per-round ratios), n >= 6 for 95 %.
        confidence: the coverage asked for, in (0, 1).

    Returns:
        (low, high), two of the samples.

    Raises:
        ValueError: too few samples for any interval to reach `confidence`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(values)
    ordered = sorted(values)
    below = 0.0  # P(Binomial(n, 1/2) < j)
    best = 0
    for j in range(1, n // 2 + 1):
        below += math.comb(n, j - 1) / 2 ** n
        if 1 - 2 * below < confidence:
            break
        best = j
    if best == 0:
        raise ValueError(f"{n} samples cannot give a {confidence:.0%} interval of the median "
                         f"(the widest one, min to max, covers {1 - 2 / 2 ** n:.1%})")
    return ordered[best - 1], ordered[n - best]


class _Held:
    """A tensor saved for backward, counted while the autograd graph holds it."""

    live = 0
    peak = 0

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor, self.size = tensor, tensor.numel() * tensor.element_size()
        _Held.live += self.size
        _Held.peak = max(_Held.peak, _Held.live)

    def __del__(self) -> None:
        _Held.live -= self.size


def saved_activation_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of tensors held for backward while `fn` runs (the CPU proxy of peak activation memory)."""
    _Held.live = _Held.peak = 0
    with torch.autograd.graph.saved_tensors_hooks(_Held, lambda held: held.tensor):
        fn()
    return _Held.peak


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fn()
        return torch.cuda.max_memory_allocated()
    return saved_activation_bytes(fn)
