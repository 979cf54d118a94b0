"""A run's health between batches: stop signals, non-finite values, pixels out of range, a collapsed multiplier.

Each rank condenses its batch into the `STOP_FLAGS` (a [5] tensor on the device, no host read); the engine
sums them over the ranks and reads them once, so every rank takes the same decision at the same batch.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional

import torch

from ..step_result import PROBLEMS, StepResult
from .run_folder import restart_advice

#: a multiplier whose largest value stays at or below COLLAPSED_LAMBDA for COLLAPSE_PATIENCE batches while most of
#: the batch violates its margin has collapsed: the run is degenerate, not finished
COLLAPSED_LAMBDA = 1e-6
COLLAPSE_PATIENCE = 20

#: the order of the per-batch stop flags every rank contributes to (one all-reduce, one host read per batch)
STOP_FLAGS = ("non-finite", "pixels", "collapsed", "signal", "violating_share")


def stop_flags(result: StepResult, signalled: bool) -> torch.Tensor:
    """This rank's view of the batch as a [5] float tensor on the device, in `STOP_FLAGS` order, with no host
    read: its failed checks, whether its multiplier looks collapsed (lambda ~ 0 everywhere while most of its
    rows violate), whether it received a stop signal, and the share of its rows outside the margin. Summed over
    the ranks, a flag > 0 means some rank saw it, so every rank takes the same decision at the same batch."""
    pending = result.pending()
    problems = pending[:len(PROBLEMS)]  # [non-finite, pixels]
    statistics = pending[result.statistics_slice]
    zero = problems.new_zeros(())
    if statistics.numel():  # [violation_mean, violation_max, satisfied_fraction, multiplier_mean, multiplier_max]
        collapsed = ((statistics[4] <= COLLAPSED_LAMBDA) & (statistics[2] < 0.5)).float()
        violating = 1 - statistics[2]
    else:  # no constraint (FARE, TeCoA)
        collapsed, violating = zero, zero
    signal_flag = torch.full((), float(signalled), device=problems.device)  # a fill, not a host-to-device copy
    return torch.stack([problems[0], problems[1], collapsed, signal_flag, violating])


def stop_if_broken(step: int, seen: dict, collapsed: int, *, method: str, dual_lr: float, world_size: int,
                   checkpoint_path: Path) -> None:
    """Raises the same one-line error on every rank when some rank's batch `step` met a non-finite value or
    pixels out of range, or the multiplier has been collapsed for `COLLAPSE_PATIENCE` batches.

    Args:
        seen: the `STOP_FLAGS` summed over the ranks, as floats.
        collapsed: consecutive batches with a collapsed multiplier, the same count on every rank.
        method, dual_lr: named in the message; checkpoint_path: checked for the advice on restarting.
    """
    where = f"training stopped at batch {step}"
    if seen["pixels"] > 0:
        raise ValueError(f"{where}: a batch held pixels outside [0, 1] on {seen['pixels']:.0f} of {world_size} rank(s)")
    if seen["non-finite"] > 0:
        raise FloatingPointError(
            f"{where}: {method} met a non-finite loss or gradient on {seen['non-finite']:.0f} of {world_size} "
            "rank(s); the weights in memory may hold it, so nothing after the last checkpoint is kept. "
            + restart_advice(checkpoint_path))
    if collapsed >= COLLAPSE_PATIENCE:
        raise FloatingPointError(
            f"{where}: the multiplier collapsed — lambda <= {COLLAPSED_LAMBDA:g} on every sample for {collapsed} "
            f"batches while {seen['violating_share'] / world_size:.0%} of the batch violates its margin (a softplus "
            f"pushed this far down no longer moves: usually --dual-lr {dual_lr:g} is too large). "
            + restart_advice(checkpoint_path))


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag (`signal`, the signal's number) checked between batches."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
