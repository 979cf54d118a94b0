"""`constrained.lightning.PrimalDualModule`: a Lightning run is the plain loop, and resumes exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from constrained import Constraint, FixedMargin, MultiplierNetwork, PrimalDual, demographic_parity, sq_l2  # noqa: E402
from constrained.lightning import CHECKPOINT_KEY, PrimalDualModule  # noqa: E402

ROWS, BATCH = 192, 32


def dataset(seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    group = (torch.rand(ROWS, generator=generator) < 0.4).long()
    x = torch.randn(ROWS, 5, generator=generator)
    x[:, 0] += group
    return TensorDataset(x, (x[:, 0] - x[:, 1] > 0).float(), group)


class TwoConstraints(PrimalDualModule):
    """A 5-16-1 MLP under demographic parity (group multipliers) and a per-sample bound on its squared score
    (a multiplier network), with K = 2 primal steps per dual step: every kind of dual state is exercised."""

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
