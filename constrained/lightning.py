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

- manual optimization: one `PrimalDual.step` per training batch (K primal steps per dual step count
  batches, as in a plain loop). The primal optimizer is stepped through Lightning's optimizer wrapper, so
  `trainer.global_step` counts primal steps and Lightning's `on_before_optimizer_step` hooks run;
- the `StepReport` goes to `self.log_dict` under ``constrained/...`` (per step);
- the dual state (multipliers, dual optimizer, K:1 schedule position, GradScaler) is saved in every
  Lightning checkpoint under ``"primal_dual"`` and restored on resume, so a resumed run equals the
  uninterrupted one;
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
from typing import Any, Optional, Union, cast

import torch

from .constraint import Observation
from .primal_dual import PrimalDual
from .report import StepReport

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('constrained.lightning needs PyTorch Lightning: pip install "lore-constrained[lightning]"') from error

__all__ = ["CHECKPOINT_KEY", "PrimalDualModule"]

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

    def on_train_end(self) -> None:
        """Under DDP, checks that every rank ends with the same multipliers (a mismatch is a silent wrong result:
        raised)."""
        if self._primal_dual is None or self.trainer.world_size < 2:
            return
        params = [p.detach().flatten() for p in self._primal_dual.multipliers.parameters()]
        if not params:
            return
        gathered = cast(torch.Tensor, self.all_gather(torch.cat(params)))  # [world, n]
        self.rank_disagreement = float((gathered - gathered[0]).abs().max())
        if self.rank_disagreement > 0:
            raise RuntimeError(f"the multipliers differ across ranks by up to {self.rank_disagreement:.3g}: the dual "
                               "steps were not synchronised (was the loss computed outside the DDP-wrapped module?)")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._primal_dual is not None:
            checkpoint[CHECKPOINT_KEY] = self._primal_dual.state_dict()
        elif self._pending_state is not None:
            checkpoint[CHECKPOINT_KEY] = self._pending_state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if CHECKPOINT_KEY not in checkpoint:
            raise ValueError(f"the checkpoint holds no {CHECKPOINT_KEY!r} state: it was not written by a "
                             "PrimalDualModule, so the multipliers could not be restored")
        if self._primal_dual is not None:
            self._primal_dual.load_state_dict(checkpoint[CHECKPOINT_KEY])
        else:  # Lightning restores the module before configure_optimizers builds the PrimalDual
            self._pending_state = checkpoint[CHECKPOINT_KEY]


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
