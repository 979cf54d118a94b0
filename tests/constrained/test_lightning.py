"""`constrained.lightning.PrimalDualModule`: a Lightning run is the plain loop, and resumes exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from constrained import Constraint, FixedMargin, MultiplierNetwork, PrimalDual, demographic_parity, sq_l2  # noqa: E402
from constrained.lightning import CHECKPOINT_KEY, PrimalDualModule, ResumableLoader, rank_disagreement  # noqa: E402

ROWS, BATCH = 192, 32


def dataset(seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    group = (torch.rand(ROWS, generator=generator) < 0.4).long()
    x = torch.randn(ROWS, 5, generator=generator)
    x[:, 0] += group
    return TensorDataset(x, (x[:, 0] - x[:, 1] > 0).float(), group)


class TwoConstraints(PrimalDualModule):
    """A 5-16-1 MLP under demographic parity (group multipliers) and a per-sample bound on its squared score
    (a multiplier network), with a dual step every 2 batches: every kind of dual state is exercised."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.parity = demographic_parity(2, 0.05)
        self.small = Constraint(d=sq_l2, margin=FixedMargin(4.0), name="small_scores")

    def configure_primal_dual(self) -> PrimalDual:
        torch.manual_seed(1)  # the multiplier network's initial weights
        return PrimalDual(torch.optim.Adam(self.net.parameters(), lr=0.02),
                          {self.parity: self.parity.multiplier(), self.small: MultiplierNetwork(5, hidden=8)},
                          dual_lr=0.3, primal_steps_per_dual=2)

    def constrained_step(self, batch, batch_idx):
        x, y, group = batch
        scores = self.net(x)
        return (F.binary_cross_entropy_with_logits(scores.squeeze(1), y),
                [self.parity.observe_scores(scores.squeeze(1), group),
                 self.small.observe(scores, torch.zeros_like(scores), features=x)])


def loader() -> DataLoader:
    return DataLoader(dataset(), batch_size=BATCH, shuffle=False)


def trainer(epochs: int, **kwargs) -> "pl.Trainer":
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, **kwargs)


def state(module: TwoConstraints) -> dict[str, torch.Tensor]:
    """Network weights and every multiplier parameter."""
    tensors = {f"net.{k}": v.detach().clone() for k, v in module.net.state_dict().items()}
    tensors.update({f"dual.{k}": v.detach().clone() for k, v in module.primal_dual.multipliers.state_dict().items()})
    return tensors


def plain_loop(epochs: int) -> TwoConstraints:
    torch.manual_seed(0)
    module = TwoConstraints()
    module._primal_dual = module.configure_primal_dual()
    for _ in range(epochs):
        for i, batch in enumerate(loader()):
            module.primal_dual.step(lambda: module.constrained_step(batch, i))
    return module


def lightning_run(epochs: int, **fit) -> tuple[TwoConstraints, "pl.Trainer"]:
    torch.manual_seed(0)
    module = TwoConstraints()
    run = trainer(epochs)
    run.fit(module, loader(), **fit)
    return module, run


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tolerance: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=tolerance, rtol=0, msg=key)


def test_a_lightning_run_equals_the_plain_loop():
    reference = plain_loop(3)
    module, run = lightning_run(3)
    assert_same(state(module), state(reference))
    steps = 3 * (ROWS // BATCH)
    assert module.primal_dual.primal_steps == steps and module.primal_dual.dual_steps == steps // 2
    assert module.batches_per_dual == 2  # one primal step per batch: the schedule counts batches
    assert run.global_step == steps  # Lightning counts our primal steps
    multipliers = state(module)["dual.demographic_parity.weight"]
    assert multipliers.abs().sum() > 0  # the constraint was active: the comparison is not of untouched zeros


def test_the_step_report_is_logged():
    module, run = lightning_run(1)
    logged = run.callback_metrics
    assert float(logged["constrained/primal_steps"]) == ROWS // BATCH
    report = module.last_report.as_dict()
    for key in ("demographic_parity/multiplier_mean", "small_scores/violation_max", "loss"):
        assert float(logged[f"constrained/{key}"]) == pytest.approx(report[key])


def test_resuming_from_a_lightning_checkpoint_equals_the_uninterrupted_run(tmp_path):
    uninterrupted, _ = lightning_run(4)
    first, run = lightning_run(2)
    path = tmp_path / "half.ckpt"
    run.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert saved[CHECKPOINT_KEY]["dual_steps"] == first.primal_dual.dual_steps
    resumed, _ = lightning_run(4, ckpt_path=path)
    assert resumed.primal_dual.primal_steps == uninterrupted.primal_dual.primal_steps
    assert_same(state(resumed), state(uninterrupted))


def test_a_checkpoint_without_dual_state_is_refused(tmp_path):
    first, run = lightning_run(1)
    path = tmp_path / "plain.ckpt"
    run.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint[CHECKPOINT_KEY]
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="multipliers could not be restored"):
        lightning_run(2, ckpt_path=path)


def test_lightning_fp16_loss_scaling_is_refused_in_favour_of_the_primal_duals():
    module = TwoConstraints()
    run = trainer(1)
    run.strategy.precision_plugin.scaler = torch.amp.GradScaler("cpu")  # what precision="16-mixed" installs
    with pytest.raises(ValueError, match="PrimalDual must own the scaling"):
        run.fit(module, loader())


def test_the_primal_dual_is_only_there_once_training_starts():
    with pytest.raises(RuntimeError, match="call trainer.fit first"):
        _ = TwoConstraints().primal_dual


# ---- resumes: same instance or new, end of epoch or mid-epoch, with a seeded shuffle


def shuffled_fit(module: TwoConstraints, folder, **limits) -> "pl.Trainer":
    """Fits `module` on a seeded ResumableLoader, checkpointing at step 9 (mid-epoch 1 of 6-batch epochs) and at
    every epoch end into `folder`; `limits` are Trainer limits (max_epochs, max_steps) and fit's ckpt_path."""
    ckpt_path = limits.pop("ckpt_path", None)
    callbacks = [pl.callbacks.ModelCheckpoint(dirpath=folder, filename="{step}", every_n_train_steps=9, save_top_k=-1),
                 pl.callbacks.ModelCheckpoint(dirpath=folder, filename="end-{epoch}", every_n_epochs=1, save_top_k=-1)]
    run = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=callbacks, **limits)
    run.fit(module, ResumableLoader(dataset(), BATCH, seed=3), ckpt_path=ckpt_path)
    return run


def fresh_module() -> TwoConstraints:
    torch.manual_seed(0)
    return TwoConstraints()


@pytest.mark.parametrize("stop", ["end_of_epoch", "mid_epoch"])
@pytest.mark.parametrize("instance", ["same", "new"])
def test_a_resumed_fit_equals_the_uninterrupted_run(tmp_path, stop, instance):
    uninterrupted = fresh_module()
    shuffled_fit(uninterrupted, tmp_path / "whole", max_epochs=4)
    first = fresh_module()
    if stop == "end_of_epoch":
        shuffled_fit(first, tmp_path / "first", max_epochs=2)
        path = tmp_path / "first" / "end-epoch=1.ckpt"
    else:
        shuffled_fit(first, tmp_path / "first", max_steps=9)
        path = tmp_path / "first" / "step=9.ckpt"
    assert path.is_file()
    resumed = first if instance == "same" else fresh_module()
    shuffled_fit(resumed, tmp_path / "second", max_epochs=4, ckpt_path=path)
    assert resumed.primal_dual.primal_steps == uninterrupted.primal_dual.primal_steps == 4 * (ROWS // BATCH)
    assert resumed.primal_dual.dual_steps == uninterrupted.primal_dual.dual_steps
    assert_same(state(resumed), state(uninterrupted))


def test_a_mid_epoch_resume_with_a_loader_that_does_not_save_its_position_is_refused(tmp_path):
    def fit(module, **limits):
        plain = DataLoader(dataset(), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(3))
        ckpt_path = limits.pop("ckpt_path", None)
        every = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=9, save_top_k=-1)
        pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[every], **limits).fit(
            module, plain, ckpt_path=ckpt_path)

    fit(fresh_module(), max_steps=9)
    with pytest.raises(ValueError, match=r"mid-epoch checkpoint \(batch 3 of 6 of epoch 1\).*repeat this epoch's first 3"):
        fit(fresh_module(), max_epochs=3, ckpt_path=tmp_path / "step=9.ckpt")


def test_a_nan_multiplier_on_one_rank_is_not_agreement():
    agreeing = torch.tensor([[0.5, 1.0], [0.5, 1.0]])
    assert rank_disagreement(agreeing) == 0.0
    with pytest.raises(RuntimeError, match=r"not finite .* on rank\(s\) \[1\]"):
        rank_disagreement(torch.tensor([[0.5, 1.0], [float("nan"), 1.0]]))
    with pytest.raises(RuntimeError, match="differ across ranks by up to 0.25"):
        rank_disagreement(torch.tensor([[0.5, 1.0], [0.75, 1.0]]))
