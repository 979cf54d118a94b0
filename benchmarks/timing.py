"""The shared timing helpers of the benchmarks: one timed call, interleaved repeats, peak memory.

Every benchmark measures its candidates side by side in one run, interleaved round-robin so that drift on a
shared machine hits all alike, and reports medians; the ratios of those medians are the results.
"""

from __future__ import annotations

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


def interleaved_medians(tasks: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Runs every task once to warm up, then `repeats` round-robin rounds; the median seconds per task."""
    for fn in tasks.values():
        fn()
    samples = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, fn in tasks.items():
            samples[name].append(timed(fn, device))
    return {name: statistics.median(values) for name, values in samples.items()}


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
