"""What one `RobustStep` call did, kept on the device until read; and the clock that times its phases.

A GPU step must not wait for the host. `StepResult` holds the step's numbers (losses, the constraint report's
statistics, the deferred checks) as device tensors and reads all of them in one transfer, when one is first
read; `PhaseClock` marks the phases with CUDA events, whose times are read after that transfer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, Optional

import torch

from constrained import ConstraintReport, DeferredReports, StepReport

from .attacks.projected_gradient import check_pixel_range


#: the problems a step's deferred checks can find, in the order of `StepResult.problems`
PROBLEMS = ("non-finite loss or gradient", "pixels outside [0, 1]")


class StepResult:
    """What one `RobustStep` call did, from the evaluations its updates used (not a re-measurement).

    The numbers stay on the device until one of them is read; then all of them cross to the host in one
    transfer (a GPU step never waits for the host in between). `fused_read` lets a caller add numbers of its own
    (the training engine's stop flags) to that same transfer.

    Attributes:
        robust_loss: the method's robust loss on the adversarial batch, batch mean, of the last primal step's
            evaluation (the first evaluation of each micro-batch in that step).
        clean_distance: mean ||phi(x) - phi_0(x)||^2 (None for an unconstrained method with measure_clean=False).
        relative_clean_distance: mean ||phi(x) - phi_0(x)||^2 / ||phi_0(x)||^2 (None likewise).
        attack_seconds, primal_seconds, dual_seconds: the phases' time on the device (CUDA events on a GPU,
            read after the step's one transfer, so timing adds no synchronisation; wall time on a CPU).
        constraint: the method's constraint report of the last `PrimalDual` step (None for unconstrained
            methods), e.g. `constraint.satisfied_fraction`, `constraint.multiplier_max`.
        constraint_name: the name its entries carry in `as_dict` ("clean").
        problems: the deferred checks that failed (names from `PROBLEMS`); reading any number of a step with a
            problem raises FloatingPointError (pixels out of range: ValueError) naming it.
    """

    def __init__(self, values: torch.Tensor, flags: torch.Tensor, *, has_clean: bool, report: Optional[StepReport],
                 constraint_name: str, timing: Callable[[], tuple[float, float, float]], method_name: str) -> None:
        self._values, self._flags, self._report = values, flags, report
        self._has_clean, self._timing, self._method_name = has_clean, timing, method_name
        self.constraint_name = constraint_name
        self._numbers: Optional[list[float]] = None
        self._pending: Optional[torch.Tensor] = None

    def pending(self) -> torch.Tensor:
        """Everything this result will read, as one float tensor on the device: [problem flags, values, the
        constraint report's statistics], built once. A caller may compute on it (e.g. stop flags) before
        `fused_read`."""
        if self._pending is None:
            parts = [self._flags, self._values]
            if self._report is not None:
                parts.append(self._report_tensor())
            self._pending = torch.cat(parts)
        return self._pending

    def _report_tensor(self) -> torch.Tensor:
        assert self._report is not None
        statistics = self._report.constraints
        tensor = statistics.statistics_tensor() if isinstance(statistics, DeferredReports) else None
        if tensor is None:  # already computed: its numbers, back on the device (tests, eager reads)
            r = statistics[self.constraint_name]
            tensor = torch.tensor([r.violation_mean, r.violation_max, r.satisfied_fraction, r.multiplier_mean,
                                   r.multiplier_max])
        return tensor.to(self._values.device, torch.float32)

    @property
    def statistics_slice(self) -> slice:
        """Where the constraint report's [violation_mean, violation_max, satisfied_fraction, multiplier_mean,
        multiplier_max] sit in `pending()` (empty for unconstrained methods)."""
        first = len(PROBLEMS) + 3
        return slice(first, first + (5 if self._report is not None else 0))

    def fused_read(self, extra: Optional[torch.Tensor] = None, *, check: bool = True) -> list[float]:
        """Reads this result's numbers and `extra` (any 1-D float tensor) in one device-to-host transfer; returns
        extra's numbers. With `check`, a failed deferred check raises (see `problems`)."""
        own = self.pending() if self._numbers is None else None
        parts = [t for t in (own, None if extra is None else extra.to(self._values.device, torch.float32).reshape(-1))
                 if t is not None]
        numbers = torch.cat(parts).tolist() if parts else []  # the one host read
        if own is not None:
            self._numbers, numbers = numbers[:own.numel()], numbers[own.numel():]
            self._pending = None
            self._finish()
        if check:
            self.raise_on_problems()
        return numbers

    def _finish(self) -> None:
        assert self._numbers is not None
        if self._report is not None and isinstance(self._report.constraints, DeferredReports):
            self._report.constraints.materialize(self._numbers[self.statistics_slice])
        self._seconds = self._timing()

    def _read(self) -> list[float]:
        if self._numbers is None:
            self.fused_read()
        else:
            self.raise_on_problems()
        assert self._numbers is not None
        return self._numbers

    @property
    def problems(self) -> tuple[str, ...]:
        if self._numbers is None:
            self.fused_read(check=False)
        assert self._numbers is not None
        return tuple(name for name, flag in zip(PROBLEMS, self._numbers) if flag > 0)

    def raise_on_problems(self) -> None:
        """Raises for a failed deferred check: ValueError for pixels outside [0, 1], FloatingPointError for a
        non-finite loss or gradient (the update was applied: the weights may be non-finite now)."""
        problems = self.problems
        if PROBLEMS[1] in problems:
            raise ValueError("images must be pixels in [0, 1] (divide by 255, or undo the normalisation: lore "
                             "normalises inside the encoder)")
        if problems:
            raise FloatingPointError(f"{self._method_name}: {problems[0]}")

    @property
    def robust_loss(self) -> float:
        return self._read()[len(PROBLEMS)]

    @property
    def clean_distance(self) -> Optional[float]:
        return self._read()[len(PROBLEMS) + 1] if self._has_clean else None

    @property
    def relative_clean_distance(self) -> Optional[float]:
        return self._read()[len(PROBLEMS) + 2] if self._has_clean else None

    @property
    def constraint(self) -> Optional[ConstraintReport]:
        if self._report is None:
            return None
        self._read()
        return self._report.constraints[self.constraint_name]

    @property
    def attack_seconds(self) -> float:
        self._read()
        return self._seconds[0]

    @property
    def primal_seconds(self) -> float:
        self._read()
        return self._seconds[1]

    @property
    def dual_seconds(self) -> float:
        self._read()
        return self._seconds[2]

    def as_dict(self) -> dict[str, float]:
        """The numbers to log, flat: robust_loss, clean_distance, ..., the phases' seconds, and the constraint's
        entries as "<name>/<field>" (e.g. "clean/satisfied_fraction")."""
        out = {"robust_loss": self.robust_loss, "attack_seconds": self.attack_seconds,
               "primal_seconds": self.primal_seconds, "dual_seconds": self.dual_seconds}
        if self.clean_distance is not None:
            out["clean_distance"] = self.clean_distance
        if self.relative_clean_distance is not None:
            out["relative_clean_distance"] = self.relative_clean_distance
        if self.constraint is not None:
            out.update(self.constraint.as_dict(self.constraint_name))
        return out


class PhaseClock:
    """Marks points of a step on `device` and tells the seconds between them, without synchronising: CUDA
    events on a GPU (their times are read once the step's one transfer has waited for the GPU anyway), wall
    time elsewhere, where every op has finished when it returns. `synchronize=True` (`lore train --profile`)
    waits for the GPU at each mark instead and reads the host clock: the old, blocking way."""

    def __init__(self, device: torch.device, synchronize: bool = False) -> None:
        self.device, self.synchronize = device, synchronize
        self.events = device.type == "cuda" and not synchronize

    def mark(self):
        if self.events:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        if self.synchronize and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def seconds(self, start, end) -> float:
        """Seconds from mark `start` to mark `end` (for events: once both have completed)."""
        return start.elapsed_time(end) / 1000 if self.events else end - start


class PhaseTimer:
    """Collects the (start, end) marks of the time spent inside it (entered through `PrimalDual(around_dual=...)`)."""

    def __init__(self, clock: PhaseClock) -> None:
        self.clock = clock
        self.spans: list = []

    @contextmanager
    def __call__(self) -> Iterator[None]:
        began = self.clock.mark()
        try:
            yield
        finally:
            self.spans.append((began, self.clock.mark()))

    def seconds(self, spans: list) -> float:
        return sum(self.clock.seconds(a, b) for a, b in spans)


class StepChecks:
    """A step's correctness checks (`PROBLEMS`): kept on the device and read with the step's numbers, or with
    `eager` read and raised where they are made (before the update they guard)."""

    def __init__(self, device: torch.device, eager: bool) -> None:
        self.eager = eager
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self._pixels = torch.zeros((), dtype=torch.bool, device=device)

    def finite(self, ok: torch.Tensor, message: str = "a loss or gradient is not finite") -> None:
        if self.eager and not bool(ok):
            raise FloatingPointError(f"{message}; stopping before the update")
        self._nonfinite = self._nonfinite | ~ok

    def pixels(self, images: torch.Tensor, tolerance: float = 1e-4) -> None:
        if self.eager:
            check_pixel_range(images, "images", tolerance)
        elif images.numel():
            self._pixels = ((images.amin() < -tolerance) | (images.amax() > 1 + tolerance))

    def tensor(self) -> torch.Tensor:
        """[non-finite, pixels out of range] as 0.0/1.0 floats (the order of `PROBLEMS`)."""
        return torch.stack([self._nonfinite, self._pixels]).float()


def step_values(robust_loss: torch.Tensor, clean_distance: Optional[torch.Tensor],
                reference: torch.Tensor) -> torch.Tensor:
    """A step's logged numbers, [3] on the device: the mean robust loss over the batch's [B] per-sample losses,
    the mean squared clean distance ||phi(x) - phi_0(x)||^2 over its [B] values, and the mean of that distance
    relative to ||phi_0(x)||^2 (`reference`: phi_0(x) [B, D]); NaN for the two distances when none was measured."""
    robust = robust_loss.float().mean()
    if clean_distance is None:
        return torch.stack([robust, robust.new_tensor(float("nan")), robust.new_tensor(float("nan"))])
    relative = (clean_distance / reference.pow(2).sum(dim=1).clamp_min(1e-12)).mean()
    return torch.stack([robust, clean_distance.float().mean(), relative.float()])
