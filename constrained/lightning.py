"""`PrimalDual` inside PyTorch Lightning: a `LightningModule` base class (needs ``pip install ".[lightning]"``).

Subclass `PrimalDualModule`, build the `PrimalDual` in `configure_primal_dual` and return the closure's
(loss, observations) from `constrained_step`; Lightning does the rest (loops, devices, DDP, checkpoints,
logging)::

    class FairClassifier(PrimalDualModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(6, 1)
            self.parity = demographic_parity(2, bound=0.02)

        def configure_primal_dual(self):
            return PrimalDual(torch.optim.Adam(self.net.parameters(), lr=1e-2),
                              {self.parity: self.parity.multiplier()}, dual_lr=0.1)

        def constrained_step(self, batch, batch_idx):
            x, y, group = batch
            scores = self.net(x).squeeze(1)
            return F.binary_cross_entropy_with_logits(scores, y), [self.parity.observe_scores(scores, group)]

    lightning.pytorch.Trainer(max_epochs=5).fit(FairClassifier(), loader)

What the base class does:

- manual optimization: one `PrimalDual.step` per training batch, so the `PrimalDual`'s
  `primal_steps_per_dual` counts *batches* per dual step here (`PrimalDualModule.batches_per_dual`), as in a
  plain loop with one step per batch; it is not Algorithm 1's K, which counts updates on one batch
  (`lore.RobustStep(primal_steps=K)`). The primal optimizer is stepped through Lightning's optimizer wrapper, so
  `trainer.global_step` counts primal steps and Lightning's `on_before_optimizer_step` hooks run;
- the `StepReport` goes to `self.log_dict` under ``constrained/...`` (per step);
- the dual state (multipliers, dual optimizer, position in the dual schedule, GradScaler) is saved in every
  Lightning checkpoint under ``"primal_dual"`` and restored on resume (into the `PrimalDual` that
  `configure_optimizers` builds, on the same module instance or a new one);
- a resumed run equals the uninterrupted one when the data order does too: from an end-of-epoch
  checkpoint with any loader whose order depends only on the epoch, and from a mid-epoch checkpoint with
  `ResumableLoader` (a seeded per-epoch shuffle that Lightning checkpoints with its position). A
  mid-epoch resume with a loader that does not save its position would repeat the epoch's first batches,
  and is refused;
- `SaveOnSigterm` writes a checkpoint when Lightning stops on SIGTERM (Lightning itself then exits 0
  without one: raise a non-zero exit after `fit`, as `examples/lightning_fairness.py` does);
- under Lightning's DDP strategy, `PrimalDual` averages the dual gradients across ranks (the multipliers
  stay identical on every rank); the multipliers are moved to the module's device.

Keep the multipliers out of the module's attributes (build them in `configure_primal_dual`): as submodules
they would be wrapped by DDP as model parameters that the primal step never differentiates.
fp16: pass ``scaler=torch.amp.GradScaler()`` to `PrimalDual` and keep Lightning at ``precision="32"`` (or
"bf16-mixed"): PrimalDual then owns the loss scaling; Lightning's "16-mixed" plugin would scale a second time
and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union, cast

import torch

from .protocols import Observation
from .primal_dual import PrimalDual
from .report import StepReport
from .resumable_loader import ResumableLoader

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('constrained.lightning needs PyTorch Lightning: pip install "lore-constrained[lightning]"') from error

from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: E402

__all__ = ["CHECKPOINT_KEY", "PrimalDualModule", "ResumableLoader", "SaveOnSigterm", "rank_disagreement"]

#: the key of the dual state in a Lightning checkpoint
CHECKPOINT_KEY = "primal_dual"


class PrimalDualModule(pl.LightningModule):
    """A LightningModule trained by a `PrimalDual` (manual optimization); see the module docstring.

    Subclasses implement `configure_primal_dual` and `constrained_step`, and call ``super().__init__()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self._primal_dual: Optional[PrimalDual] = None
        self._pending_state: Optional[dict[str, Any]] = None
        self._uses_lightning_optimizer = False
        #: the last step's report (None before the first step)
        self.last_report: Optional[StepReport] = None
        #: under DDP, the largest difference between any rank's multiplier parameters and rank 0's at the end of
        #: training (0.0 when they agree, as they must; None when not measured)
        self.rank_disagreement: Optional[float] = None

    # ---------------------------------------------------------------- for subclasses

    def configure_primal_dual(self) -> PrimalDual:
        """Builds the `PrimalDual` (its primal optimizer over this module's parameters)."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_primal_dual()")

    def constrained_step(self, batch: Any, batch_idx: int) -> tuple[torch.Tensor, Union[Observation, Sequence[Observation]]]:
        """The closure's body for one batch: (scalar objective, observations of every constraint)."""
        raise NotImplementedError(f"{type(self).__name__} must implement constrained_step(batch, batch_idx)")

    # ---------------------------------------------------------------- state

    @property
    def primal_dual(self) -> PrimalDual:
        """The `PrimalDual` built by `configure_optimizers` (Lightning calls it when `fit` starts)."""
        if self._primal_dual is None:
            raise RuntimeError("the PrimalDual is built when training starts (configure_optimizers); "
                               "call trainer.fit first")
        return self._primal_dual

    @property
    def batches_per_dual(self) -> int:
        """Training batches per dual step: the `PrimalDual`'s `primal_steps_per_dual`, one step per batch."""
        return self.primal_dual.primal_steps_per_dual

    # ---------------------------------------------------------------- Lightning hooks

    def configure_optimizers(self) -> Any:
        primal_dual = self.configure_primal_dual()
        if not isinstance(primal_dual, PrimalDual):
            raise TypeError(f"configure_primal_dual must return a PrimalDual, got {type(primal_dual).__name__}")
        trainer = self._trainer
        plugin_scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None) if trainer else None
        if plugin_scaler is not None:
            raise ValueError("Lightning's precision='16-mixed' scales the loss itself; PrimalDual must own the scaling: "
                             "use precision='32-true' (or 'bf16-mixed') and PrimalDual(..., scaler=torch.amp.GradScaler())")
        primal_dual.multipliers.to(self.device)  # in place: the dual optimizer keeps its parameters
        # a fit with ckpt_path: Lightning called on_load_checkpoint just before (on this instance or a new one)
        if self._pending_state is not None:
            primal_dual.load_state_dict(self._pending_state)
            self._pending_state = None
        self._primal_dual = primal_dual
        self._uses_lightning_optimizer = False
        return primal_dual.primal_optimizer

    def training_step(self, batch: Any, batch_idx: int) -> None:
        primal_dual = self.primal_dual
        if not self._uses_lightning_optimizer:
            # Lightning's wrapper of the same optimizer: its step counts global_step and runs Lightning's hooks
            wrapped = self.optimizers()
            if isinstance(wrapped, list):
                raise RuntimeError("configure_optimizers must return only the primal optimizer")
            # a LightningOptimizer is an instance of the wrapped optimizer's class (Lightning subclasses it on the fly)
            primal_dual.primal_optimizer = cast(torch.optim.Optimizer, wrapped)
            self._uses_lightning_optimizer = True
        report = primal_dual.step(lambda: self.constrained_step(batch, batch_idx))
        self.last_report = report
        self.log_dict({f"constrained/{key}": value for key, value in report.as_dict().items()},
                      on_step=True, on_epoch=False, batch_size=_batch_size(batch))

    def on_train_start(self) -> None:
        """Refuses a mid-epoch resume whose loader cannot continue where the checkpoint stopped."""
        trainer = self.trainer
        if not trainer.fit_loop.restarting:
            return
        per_epoch = trainer.num_training_batches
        done = trainer.global_step % per_epoch if per_epoch not in (0, float("inf")) else 0
        if done and not all(_saves_position(item) for item in _flattened(trainer.train_dataloader)):
            raise ValueError(f"resuming from a mid-epoch checkpoint (batch {done} of {int(per_epoch)} of epoch "
                             f"{trainer.current_epoch}) with a loader that does not save its position: it would "
                             f"repeat this epoch's first {done} batches. Resume from an end-of-epoch checkpoint, or "
                             "train with constrained.lightning.ResumableLoader")

    def on_train_end(self) -> None:
        """Under DDP, checks that every rank ends with the same multipliers (a mismatch is a silent wrong result:
        raised)."""
        if self._primal_dual is None or self.trainer.world_size < 2:
            return
        params = [p.detach().flatten() for p in self._primal_dual.multipliers.parameters()]
        if not params:
            return
        gathered = cast(torch.Tensor, self.all_gather(torch.cat(params)))  # [world, n]
        self.rank_disagreement = rank_disagreement(gathered)


    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._primal_dual is not None:
            checkpoint[CHECKPOINT_KEY] = self._primal_dual.state_dict()
        elif self._pending_state is not None:
            checkpoint[CHECKPOINT_KEY] = self._pending_state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if CHECKPOINT_KEY not in checkpoint:
            raise ValueError(f"the checkpoint holds no {CHECKPOINT_KEY!r} state: it was not written by a "
                             "PrimalDualModule, so the multipliers could not be restored")
        # Lightning restores the module before configure_optimizers builds a new PrimalDual, which takes the state
        # (loading it into the PrimalDual of an earlier fit on this instance would be lost when that one is replaced)
        self._pending_state = checkpoint[CHECKPOINT_KEY]
        if self._primal_dual is not None:  # a direct call outside fit: the current PrimalDual takes it too
            self._primal_dual.load_state_dict(checkpoint[CHECKPOINT_KEY])


def rank_disagreement(gathered: torch.Tensor) -> float:
    """The largest difference between any rank's multiplier parameters and rank 0's; raises unless it is 0.

    Args:
        gathered: [world, n] every rank's multiplier parameters, flattened (rank by row).

    Raises:
        RuntimeError: the ranks differ, or some value is not finite (NaN - NaN is NaN, and NaN > 0 is False,
            so a NaN on one rank would otherwise pass as agreement).
    """
    if not bool(torch.isfinite(gathered).all()):
        bad = sorted({int(rank) for rank in (~torch.isfinite(gathered)).nonzero()[:, 0]})
        raise RuntimeError(f"a multiplier is not finite at the end of training on rank(s) {bad}: the dual step "
                           "diverged there")
    difference = float((gathered - gathered[0]).abs().max())
    if difference > 0:
        raise RuntimeError(f"the multipliers differ across ranks by up to {difference:.3g}: the dual "
                           "steps were not synchronised (was the loss computed outside the DDP-wrapped module?)")
    return difference


def _flattened(loaders: Any) -> list[Any]:
    """The loaders of `Trainer.train_dataloader` (one loader, or a list, tuple or dict of them), as a list."""
    if loaders is None:
        return []
    if isinstance(loaders, (list, tuple)):
        return [item for entry in loaders for item in _flattened(entry)]
    if isinstance(loaders, dict):
        return _flattened(list(loaders.values()))
    return [loaders]


def _saves_position(loader: Any) -> bool:
    """Whether Lightning checkpoints `loader`'s position: it has `state_dict` and `load_state_dict` (what
    Lightning's loops look for)."""
    return callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))


def _batch_size(batch: Any) -> Optional[int]:
    """The leading dimension of the batch's first tensor (what Lightning would infer, without its warning)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if isinstance(batch, (list, tuple)):
        for item in batch:
            size = _batch_size(item)
            if size is not None:
                return size
    if isinstance(batch, dict):
        return _batch_size(list(batch.values()))
    return None


class SaveOnSigterm(pl.Callback):
    """Writes a checkpoint to `path` when Lightning stops training on SIGTERM (at a batch boundary).

    Lightning ends `fit` on SIGTERM by raising `SIGTERMException`, a `SystemExit` with code 0, and saves
    nothing; with this callback the run can be resumed from `path` (`fit(..., ckpt_path=path)`), and
    `received` tells the caller to exit non-zero.
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        #: True once a SIGTERM stopped training and the checkpoint was written
        self.received = False

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)  # Lightning writes it atomically (temporary file, then rename)
            self.received = True
