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

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Callable, Literal, Optional

import torch
from torch import nn

from constrained import PrimalDual, StepReport, sq_l2
from constrained.primal_dual import CHECKS
from constrained.validation import check_positive_int

from .attacks.projected_gradient import pgd
from .heads import ZeroShotHead
from .methods import Batch, Method
from .presets import PAPER
from .reference import FrozenReference
from .step_result import PhaseClock, PhaseTimer, StepChecks, StepResult


PASSES = ("fused", "sequential")


class RobustStep:
    """Runs Algorithm 1's per-batch update for `method` on `encoder`.

    Args:
        encoder: trainable image encoder, images in [0, 1] -> [B, D] (may be DDP-wrapped).
        method: a `Method` (fare(), lore(...), tecoa(), ...).
        optimizer: optimizer of the encoder's parameters (paper: AdamW, lr 1e-5, wd 1e-4).
        eps: l_inf training radius in pixel units (e.g. 4/255).
        reference: frozen phi_0; default: a `FrozenReference` of `encoder` as it is now.
        head: zero-shot head for supervised methods (TeCoA family).
        pgd_steps: PGD iterations (paper: 10); step size `pgd_step_size` (default eps/4).
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
        pgd_steps: int = 10,
        pgd_step_size: Optional[float] = None,
        primal_steps: Optional[int] = None,
        dual_optimizer=None,
        mode: Literal["simultaneous", "alternating"] = "simultaneous",
        embed_dim: Optional[int] = None,
        passes: Literal["fused", "sequential"] = "fused",
        autocast_dtype: Optional[torch.dtype] = None,
        measure_clean: Optional[bool] = None,
        accumulation_steps: int = 1,
        checks: Literal["deferred", "eager"] = "deferred",
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
        self.reference = reference if reference is not None else FrozenReference(_unwrap(encoder))
        self.head = head
        self.pgd_steps = pgd_steps
        self.pgd_step_size = pgd_step_size
        if primal_steps is None:
            primal_steps = method.authors_updates or PAPER.primal_steps
        self._primal_steps = check_positive_int(primal_steps, "primal_steps")  # read through `primal_steps`
        if passes not in PASSES:
            raise ValueError(f"passes must be one of {PASSES}, got {passes!r}")
        self.passes = passes
        self.autocast_dtype = autocast_dtype
        self.measure_clean = bool(measure_clean)
        self.accumulation_steps = check_positive_int(accumulation_steps, "accumulation_steps")
        if checks not in CHECKS:
            raise ValueError(f"checks must be one of {CHECKS}, got {checks!r}")
        self.checks = checks
        self._clock = PhaseClock(next(encoder.parameters()).device, synchronize=profile)
        self._dual_timer = PhaseTimer(self._clock)
        self._dual_features_ready = False  # a standardizing multiplier's statistics are known to be set
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
            embed_dim = embed_dim or getattr(_unwrap(encoder), "embed_dim", None)
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
        """Fits a standardizing multiplier's feature statistics on phi_0 of `images` (a no-op otherwise).

        Call it once before training with a sample of training images (e.g. a thousand, the same on every
        rank); the first batch is used instead if it was not called.

        Args:
            images: [N >= 2, C, H, W] training images in [0, 1].
            batch_size: images per forward pass of phi_0.
        """
        multiplier = self._standardizing_multiplier()
        if multiplier is None:
            return
        with self._autocast(images):  # phi_0 as the step computes it
            features = torch.cat([self.reference(images[i : i + batch_size]).float()
                                  for i in range(0, len(images), batch_size)])
        multiplier.fit_standardization(features)
        self._dual_features_ready = True

    def _standardizing_multiplier(self) -> Optional[nn.Module]:
        multiplier = self.multiplier
        return multiplier if multiplier is not None and getattr(multiplier, "standardize", False) else None

    def _fit_dual_features_once(self, reference: torch.Tensor) -> None:
        """Fits on this batch's phi_0 if nothing fitted the statistics yet; reads the buffer (a device sync) only
        until it is known to be set, so the training step pays nothing afterwards."""
        if self._dual_features_ready:
            return
        multiplier = self._standardizing_multiplier()
        if multiplier is not None and not bool(multiplier.standardization_fitted):
            multiplier.fit_standardization(reference)
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

    def _micro_batches(self, batch: Batch, initial_delta: Optional[torch.Tensor]):
        """Splits a batch into `accumulation_steps` equal parts, each with its slice of the PGD start (views, not
        copies: one part is the batch itself)."""
        count = self.accumulation_steps
        size = batch.images.shape[0]
        if size % count:
            raise ValueError(f"batch size {size} is not divisible by accumulation_steps={count}")
        parts = []
        for first in range(0, size, size // count):
            rows = slice(first, first + size // count)
            part = Batch(batch.images[rows], batch.reference[rows],
                         None if batch.labels is None else batch.labels[rows], batch.head)
            parts.append((part, None if initial_delta is None else initial_delta[rows]))
        return parts

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
        # per micro-batch index: the first evaluation of each primal step, the one its update differentiates (not
        # the re-evaluations after it, alternating mode's dual step, or inside it, L-BFGS)
        stats: dict[str, dict[int, torch.Tensor]] = {"robust_loss": {}, "clean_distance": {}}
        micro = self._micro_batches(batch, initial_delta)
        began = self._clock.mark()
        adversarial = [self._attack(part, start, generator) for part, start in micro]
        weight = 1.0 / len(micro)  # each micro-batch's share of the Lagrangian (as in step_accumulated)
        closures = [self._closure(index, len(micro), part, adv, weight, stats, flags)
                    for index, ((part, _), adv) in enumerate(zip(micro, adversarial))]
        attacked = self._clock.mark()
        self._dual_timer.spans = []
        report = self._update(closures, stats, flags)
        updated = self._clock.mark()
        spans, clock, dual = list(self._dual_timer.spans), self._clock, self._dual_timer

        def timing() -> tuple[float, float, float]:
            dual_seconds = dual.seconds(spans)
            return (clock.seconds(began, attacked), clock.seconds(attacked, updated) - dual_seconds, dual_seconds)

        return self._result(batch, stats, report, flags, timing)

    def _attack(self, part: Batch, start: Optional[torch.Tensor], generator: Optional[torch.Generator]) -> torch.Tensor:
        """x + delta for one micro-batch: PGD on the method's robust loss, outside DDP, with the encoder's
        parameters set not to require gradients, so that eager and compiled backward passes compute the input's
        gradient only."""
        method = self.method
        with _input_gradient_only(_unwrap(self.encoder)):
            return part.images + pgd(
                lambda perturbed: method.robust_loss(self._embed(perturbed, plain=True), part),
                part.images, eps=self.eps, step_size=self.pgd_step_size, steps=self.pgd_steps,
                generator=generator, initial_delta=start, check_range=False,  # checked once per batch (StepChecks)
            )

    def _closure(self, index: int, count: int, part: Batch, adv: torch.Tensor, weight: float,
                 stats: dict[str, dict[int, torch.Tensor]], flags: StepChecks) -> Callable[[], tuple[torch.Tensor, list]]:
        """The closure of micro-batch `index` of `count`: (mean robust loss, [the constraint's observation]); its
        first evaluation in each primal step records the robust loss and the clean distance into `stats`. Under
        DDP every micro-batch but the last runs its forward in `no_sync`, so its backward does not all-reduce."""
        method = self.method

        def closure():
            with self._no_sync() if index < count - 1 else nullcontext():
                return evaluate()

        def evaluate():
            sequential = method.constraint is not None and self.passes == "sequential"
            if method.constraint is not None and not sequential:
                adv_emb, clean_emb = self._embed(torch.cat([adv, part.images])).chunk(2)
                robust = method.robust_loss(adv_emb, part)
            elif sequential:
                robust = self._backward_now(lambda: method.robust_loss(self._embed(adv), part), weight, flags)
                clean_emb = self._embed(part.images)  # the robust term is already back-propagated: a value only
            else:
                robust, clean_emb = method.robust_loss(self._embed(adv), part), None
            first = index not in stats["robust_loss"]
            if first:
                stats["robust_loss"][index] = robust.detach()
            if clean_emb is None:
                return robust.mean(), []
            if first:
                stats["clean_distance"][index] = sq_l2(clean_emb.detach(), part.reference)
            observation = method.constraint.observe(
                method.view(clean_emb, part), method.view(part.reference, part), features=part.reference
            )
            return robust.mean(), [observation]

        return closure

    def _no_sync(self):
        """DDP's no_sync (gradients accumulate locally); nothing outside DDP or without gradients."""
        sync_later = getattr(self.encoder, "no_sync", None) if torch.is_grad_enabled() else None
        return sync_later() if sync_later is not None else nullcontext()

    def _update(self, closures: list, stats: dict[str, dict[int, torch.Tensor]], flags: StepChecks
                ) -> Optional[StepReport]:
        """K primal updates on the closures (through `PrimalDual` for constrained methods, with its dual update);
        returns the last `StepReport` (None for unconstrained methods)."""
        report = None
        for _ in range(self.primal_steps):
            stats["robust_loss"].clear()
            stats["clean_distance"].clear()
            report = self.primal_dual.step_accumulated(closures)
            if (scalars := report.scalars_tensor()) is not None:  # deferred: [loss, lagrangian, finite]
                flags.finite(scalars[2] > 0, f"{self.method.name}: a loss or gradient is not finite")
        return report if self.method.constraint is not None else None

    def _result(self, batch: Batch, stats: dict[str, dict[int, torch.Tensor]], report: Optional[StepReport],
                flags: StepChecks, timing: Callable[[], tuple[float, float, float]]) -> StepResult:
        """The step's numbers from its own evaluations (a no-grad clean forward only when none measured it), still
        on the device."""
        measured = {k: torch.cat(list(v.values())) for k, v in stats.items() if v}
        if "clean_distance" not in measured and self.measure_clean:
            with torch.no_grad():
                measured["clean_distance"] = sq_l2(self._embed(batch.images, plain=True), batch.reference)
        distance = measured.get("clean_distance")
        robust = measured["robust_loss"].float().mean()
        if distance is None:
            values = torch.stack([robust, robust.new_tensor(float("nan")), robust.new_tensor(float("nan"))])
        else:
            relative = (distance / batch.reference.pow(2).sum(dim=1).clamp_min(1e-12)).mean()
            values = torch.stack([robust, distance.float().mean(), relative.float()])
        name = self.method.constraint.name if self.method.constraint is not None else ""
        return StepResult(values, flags.tensor(), has_clean=distance is not None, report=report, constraint_name=name,
                          timing=timing, method_name=self.method.name)

    def _backward_now(self, robust_loss: Callable[[], torch.Tensor], weight: float, flags: StepChecks) -> torch.Tensor:
        """Forward and back-propagate `weight * mean(robust loss)` at once, freeing its activations; returns the
        per-sample losses, detached. Under DDP the gradients are synchronised by the later clean backward."""
        grad = torch.is_grad_enabled()
        with self._no_sync():
            robust = robust_loss()
            flags.finite(torch.isfinite(robust.detach()).all(), f"{self.method.name} robust loss is not finite")
            if grad and robust.requires_grad:
                (weight * robust.mean()).backward()
        return robust.detach()

    def state_dict(self) -> dict:
        """Dual state (multipliers, dual optimizer, schedule); the encoder and optimizer are saved by the caller."""
        return {} if self.method.constraint is None else {"primal_dual": self.primal_dual.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.method.constraint is not None:
            if "primal_dual" not in state:
                raise ValueError(f"method {self.method.name!r} needs dual state, the state dict has none")
            self.primal_dual.load_state_dict(state["primal_dual"])


@contextmanager
def _input_gradient_only(module: nn.Module) -> Iterator[None]:
    """Inside: `module`'s parameters do not require gradients (restored on exit), so a backward pass computes
    the input's gradient alone: eager autograd skips the weight gradients' matmuls either way, but a compiled
    graph (torch.compile) keeps them unless the parameters are marked like this."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif isinstance(module, torch._dynamo.eval_frame.OptimizedModule):
            module = module._orig_mod
        else:
            return module
