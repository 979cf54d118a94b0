"""One training step of Algorithm 1 for any `Method`.

For a batch x:
  1. phi_0(x) once (frozen reference, or its cache);
  2. delta <- PGD on the method's robust loss (once per batch);
  3. K primal updates of the encoder on that same (x, delta);
  4. one dual update (constrained methods), through `constrained.PrimalDual`.

When the method has a constraint, the adversarial and clean images go
through the encoder either in one concatenated forward (`passes="fused"`,
exact for encoders without batch statistics: ViTs, LayerNorm CNNs), or one
after the other with the adversarial term back-propagated before the clean
forward (`passes="sequential"`), so that only one pass's activations are
alive at a time: FARE's peak memory, the same update.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Literal, Optional

import torch
from torch import nn

from constrained import PrimalDual, StepReport, sq_l2
from constrained.validation import check_positive_int

from .attacks.projected_gradient import pgd
from .heads import ZeroShotHead
from .methods import Batch, Method
from .presets import PAPER
from .reference import FrozenReference
from .vocabulary import Checks, Passes, check_choice
from .wrappers import input_gradient_only, unwrap
from .step_closure import Measured, batch_closure, micro_batches
from .step_result import PhaseClock, PhaseTimer, StepChecks, StepResult, step_values


class RobustStep:
    """Runs Algorithm 1's per-batch update for `method` on `encoder`.

    Args:
        encoder: trainable image encoder, images in [0, 1] -> [B, D] (may be DDP-wrapped).
        method: a `Method` (fare(), lore(...), tecoa(), ...).
        optimizer: optimizer of the encoder's parameters (paper: AdamW, lr 1e-5, wd 1e-4).
        eps: l_inf training radius in pixel units (e.g. 4/255).
        reference: frozen phi_0; default: a `FrozenReference` of `encoder` as it is now.
        head: zero-shot head for supervised methods (TeCoA family).
        attack: the training attack, `lore.attacks.pgd` (default, the paper's) or any callable with its arguments
            (`lore.training.attacks` registers them by name for `lore train --attack`).
        pgd_steps: the attack's iterations (paper: 10); step size `pgd_step_size` (default eps/4).
        primal_steps: K, primal updates per batch and per dual update. None (default): the method's authors'
            count where it has one (`Method.authors_updates`: FARE and TeCoA take 1 update per adversarial
            batch), else the paper's K = 5 (Algorithm 1, Table 6). Give K to FARE or TeCoA for the
            equal-updates control.
        dual_optimizer: factory params -> optimizer with maximize=True; default: the method's own
            `dual_ascent` (`lore.lore()`: the paper's plain ascent at 5e-4).
        mode: "simultaneous" (Algorithm 1) or "alternating" dual updates.
        embed_dim: D for the multiplier network (default: `encoder.embed_dim`).
        passes: "fused" (one forward over [x + delta; x]: fastest where batching helps) or "sequential"
            (adversarial forward+backward, then clean forward+backward: half the activation memory of
            "fused", i.e. FARE's; the same gradients up to floating-point summation order).
        autocast_dtype: e.g. torch.bfloat16 to run forwards under autocast.
        measure_clean: for unconstrained methods, also measure ||phi(x) - phi_0(x)||^2 (one extra no-grad
            forward per batch, which only logs it). None (default): no, as the methods' authors train them;
            constrained methods get it for free.
        accumulation_steps: split each batch into this many equal micro-batches (attacked and
            back-propagated one at a time, gradients accumulated): the same update with less memory. Under DDP
            only the last micro-batch's backward all-reduces.
        checks: "deferred" (default): the checks that guard correctness (a non-finite loss or gradient, pixels
            outside [0, 1]) are computed on the device and read with the step's numbers, in the one transfer of
            `StepResult`; reading a result whose check failed raises. "eager": each check is read (and raises)
            where it is made, before the update it guards: several host reads per step, for debugging.
        profile: time the phases by waiting for the GPU at each boundary (otherwise CUDA events, no wait).
    """

    def __init__(
        self,
        encoder: nn.Module,
        method: Method,
        optimizer: torch.optim.Optimizer,
        *,
        eps: float,
        reference: Optional[Callable[..., torch.Tensor]] = None,
        head: Optional[ZeroShotHead] = None,
        attack: Callable[..., torch.Tensor] = pgd,
        pgd_steps: int = 10,
        pgd_step_size: Optional[float] = None,
        primal_steps: Optional[int] = None,
        dual_optimizer=None,
        mode: Literal["simultaneous", "alternating"] = "simultaneous",
        embed_dim: Optional[int] = None,
        passes: Passes = "fused",
        autocast_dtype: Optional[torch.dtype] = None,
        measure_clean: Optional[bool] = None,
        accumulation_steps: int = 1,
        checks: Checks = "deferred",
        profile: bool = False,
    ) -> None:
        if not isinstance(method, Method):
            raise TypeError(f"method must be a lore Method, got {type(method).__name__}")
        if method.supervised and head is None:
            raise ValueError(f"method {method.name!r} is supervised: pass head=ZeroShotHead(class_embeddings)")
        self.encoder = encoder
        self.method = method
        self.optimizer = optimizer
        self.eps = eps
        self.reference = reference if reference is not None else FrozenReference(unwrap(encoder))
        self.head = head
        self.attack = attack
        self.pgd_steps = pgd_steps
        self.pgd_step_size = pgd_step_size
        if primal_steps is None:
            primal_steps = method.authors_updates or PAPER.primal_steps
        self._primal_steps = check_positive_int(primal_steps, "primal_steps")  # read through `primal_steps`
        self.passes = check_choice(passes, Passes, "passes")
        self.autocast_dtype = autocast_dtype
        self.measure_clean = bool(measure_clean)
        self.accumulation_steps = check_positive_int(accumulation_steps, "accumulation_steps")
        self.checks = check_choice(checks, Checks, "checks")
        self._clock = PhaseClock(next(encoder.parameters()).device, synchronize=profile)
        self._dual_timer = PhaseTimer(self._clock)
        self._dual_features_ready = False  # the multiplier's feature statistics are known to be set
        # one update path: an unconstrained method (FARE, TeCoA) steps through PrimalDual too, with no constraint
        self.primal_dual = self._primal_dual(optimizer, dual_optimizer, mode, embed_dim)

    def _primal_dual(self, optimizer: torch.optim.Optimizer, dual_optimizer, mode: str,
                     embed_dim: Optional[int]) -> PrimalDual:
        """The stepper: a constrained method's multiplier (sized by embed_dim), formulation and dual ascent; for an
        unconstrained method, none (the same primal update and checks)."""
        method, encoder = self.method, self.encoder
        if method.constraint is None:
            return PrimalDual(optimizer, {}, primal_steps_per_dual=self._primal_steps, mode=mode, checks=self.checks)
        multiplier = None
        if method.multiplier is not None:
            embed_dim = embed_dim or getattr(unwrap(encoder), "embed_dim", None)
            if embed_dim is None:
                raise ValueError(f"method {method.name!r} needs embed_dim to size its multiplier")
            multiplier = method.multiplier(embed_dim).to(next(encoder.parameters()).device)
        ascent = dual_optimizer if dual_optimizer is not None else method.dual_ascent
        return PrimalDual(
            optimizer,
            {method.constraint: multiplier},
            formulation=method.formulation,
            dual_optimizer=None if multiplier is None else ascent,  # a fixed penalty: nothing ascends
            primal_steps_per_dual=self._primal_steps,
            mode=mode,
            around_dual=self._dual_timer,
            checks=self.checks,
        )

    @property
    def primal_steps(self) -> int:
        """K: primal updates per batch; for constrained methods the `PrimalDual`'s schedule, its one owner."""
        return self.primal_dual.primal_steps_per_dual

    @property
    def multiplier(self) -> Optional[nn.Module]:
        """The method's multiplier (None for unconstrained or fixed-penalty methods)."""
        constraint = self.method.constraint
        return self.primal_dual.multiplier(constraint.name) if constraint is not None else None

    @torch.no_grad()
    def fit_dual_features(self, images: torch.Tensor, batch_size: int = 256) -> None:
        """Fits the multiplier's feature statistics (its `constrained.FitsFeatures` hook: a standardizing network's
        mean and scale) on phi_0 of `images`, when it has statistics to fit; a no-op otherwise.

        Call it once before training with a sample of training images (e.g. a thousand, the same on every
        rank); the first batch is used instead if it was not called.

        Args:
            images: [N >= 2, C, H, W] training images in [0, 1].
            batch_size: images per forward pass of phi_0.
        """
        unfitted = self.primal_dual.unfitted_features()  # one host read, before training
        if unfitted:
            with self._autocast(images):  # phi_0 as the step computes it
                features = torch.cat([self.reference(images[i : i + batch_size]).float()
                                      for i in range(0, len(images), batch_size)])
            self.primal_dual.fit_features(features, unfitted)
        self._dual_features_ready = True

    def _fit_dual_features_once(self, reference: torch.Tensor) -> None:
        """Fits on this batch's phi_0 if nothing fitted the statistics yet; reads the hook's state (a device sync)
        only until it is known to be set, so the training step pays nothing afterwards."""
        if self._dual_features_ready:
            return
        if unfitted := self.primal_dual.unfitted_features():
            self.primal_dual.fit_features(reference, unfitted)
        self._dual_features_ready = True

    def _autocast(self, images: torch.Tensor):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=images.device.type, dtype=self.autocast_dtype)

    def _embed(self, images: torch.Tensor, plain: bool = False) -> torch.Tensor:
        # attacks and no-grad measurements run outside DDP (no gradient sync across ranks), compiled if it is
        encoder = self.encoder.module if plain and isinstance(self.encoder, nn.parallel.DistributedDataParallel) else self.encoder
        with self._autocast(images):
            return encoder(images).float()

    def __call__(
        self,
        images: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        initial_delta: Optional[torch.Tensor] = None,
    ) -> StepResult:
        """One batch: attack once, K primal updates, one dual update.

        Args:
            images: [B, C, H, W] clean images in [0, 1].
            labels: [B] int64 labels (supervised methods).
            generator: makes PGD's random start reproducible.
            initial_delta: explicit PGD start (see `pgd`), e.g. a rank's rows of a global one.

        Returns:
            A `StepResult` (`.as_dict()` gives the numbers to log; reading one reads them all, once).
        """
        if self.method.supervised and labels is None:
            raise ValueError(f"method {self.method.name!r} is supervised: pass labels")
        flags = StepChecks(images.device, eager=self.checks == "eager")
        flags.pixels(images)
        with self._autocast(images):  # phi_0 at the training precision, as the probe computes it
            reference = self.reference(images).float()
        batch = Batch(images=images, reference=reference, labels=labels, head=self.head)
        self._fit_dual_features_once(batch.reference)  # fit_dual_features was not called: this batch's statistics
        micro = micro_batches(batch, initial_delta, self.accumulation_steps)
        began = self._clock.mark()
        adversarial = [self._attack(part, start, generator) for part, start in micro]
        sequential = self.method.constraint is not None and self.passes == "sequential"
        closures = [batch_closure(self.method, part, adv, embed=self._embed, no_sync=self._no_sync,
                                  last=index == len(micro) - 1, sequential=sequential, weight=1.0 / len(micro),
                                  flags=flags)
                    for index, ((part, _), adv) in enumerate(zip(micro, adversarial))]
        attacked = self._clock.mark()
        self._dual_timer.spans = []
        report = self._update(closures, flags)
        updated = self._clock.mark()
        spans, clock, dual = list(self._dual_timer.spans), self._clock, self._dual_timer

        def timing() -> tuple[float, float, float]:
            dual_seconds = dual.seconds(spans)
            return (clock.seconds(began, attacked), clock.seconds(attacked, updated) - dual_seconds, dual_seconds)

        return self._result(batch, report, flags, timing)

    def _attack(self, part: Batch, start: Optional[torch.Tensor], generator: Optional[torch.Generator]) -> torch.Tensor:
        """x + delta for one micro-batch: the attack (PGD) on the method's robust loss, outside DDP, with the encoder's
        parameters set not to require gradients, so that eager and compiled backward passes compute the input's
        gradient only."""
        method = self.method
        with input_gradient_only(unwrap(self.encoder)):
            return part.images + self.attack(
                lambda perturbed: method.robust_loss(self._embed(perturbed, plain=True), part),
                part.images, eps=self.eps, step_size=self.pgd_step_size, steps=self.pgd_steps,
                generator=generator, initial_delta=start, check_range=False,  # checked once per batch (StepChecks)
            )

    def _no_sync(self):
        """DDP's no_sync (gradients accumulate locally); nothing outside DDP or without gradients."""
        sync_later = getattr(self.encoder, "no_sync", None) if torch.is_grad_enabled() else None
        return sync_later() if sync_later is not None else nullcontext()

    def _update(self, closures: list, flags: StepChecks) -> StepReport:
        """K primal updates on the closures through `PrimalDual` (with its dual update, for constrained methods);
        returns the last `StepReport`."""
        for _ in range(self.primal_steps):
            report = self.primal_dual.step_accumulated(closures)
            if (scalars := report.scalars_tensor()) is not None:  # deferred: [loss, lagrangian, finite]
                flags.finite(scalars[2] > 0, f"{self.method.name}: a loss or gradient is not finite")
        return report

    def _result(self, batch: Batch, report: StepReport, flags: StepChecks,
                timing: Callable[[], tuple[float, float, float]]) -> StepResult:
        """The step's numbers from the last update's own evaluations (`Measured`, in `report.misc`; a no-grad clean
        forward only when none measured it), still on the device."""
        measured: tuple[Measured, ...] = report.misc
        distance = torch.cat([m.clean_distance for m in measured]) if measured[0].clean_distance is not None else None
        if distance is None and self.measure_clean:
            with torch.no_grad():
                distance = sq_l2(self._embed(batch.images, plain=True), batch.reference)
        values = step_values(torch.cat([m.robust_loss for m in measured]), distance, batch.reference)
        constraint = self.method.constraint
        return StepResult(values, flags.tensor(), has_clean=distance is not None,
                          report=report if constraint is not None else None,
                          constraint_name=constraint.name if constraint is not None else "", timing=timing,
                          method_name=self.method.name)

    def state_dict(self) -> dict:
        """Dual state (multipliers, dual optimizer, schedule); the encoder and optimizer are saved by the caller."""
        return {} if self.method.constraint is None else {"primal_dual": self.primal_dual.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.method.constraint is not None:
            if "primal_dual" not in state:
                raise ValueError(f"method {self.method.name!r} needs dual state, the state dict has none")
            self.primal_dual.load_state_dict(state["primal_dual"])
