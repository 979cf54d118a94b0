"""A degenerate run is not a finished run: a collapsed multiplier stops training with a message that names
what is left to restart from, checked rather than assumed."""

from __future__ import annotations

import pytest
import torch

from lore.training.config import TrainConfig
from lore.training.engine import train
from lore.training.health import COLLAPSE_PATIENCE
from lore.training.run_folder import restart_advice


@pytest.mark.slow
def test_a_collapsed_multiplier_stops_the_run_instead_of_finishing_it(tmp_path, lore_cache):
    """--dual-lr 1e30 with the softplus link: from the second batch lambda(x) = 0 on every sample while all of
    them violate (softplus saturates at 0)."""
    config = TrainConfig(model="digits-clip", method="lore", output=str(tmp_path / "run"), cache_dir=str(lore_cache),
                         max_steps=COLLAPSE_PATIENCE + 10, batch_size=16, eps=32 / 255, pgd_steps=2, primal_steps=1,
                         lr=1e-3, dual_lr=1e30, dual_hidden=32, probe_every=0, checkpoint_every=5, device="cpu",
                         dual_preset="embedded", dual_link="softplus", dual_signal="rate", dual_init=1.0,
                         dual_optimizer="adam", dual_beta1=0.9)
    with pytest.raises(FloatingPointError, match="the multiplier collapsed.*--dual-lr 1e\\+30.*holds finite weights"):
        train(config)
    assert not (tmp_path / "run" / "summary.json").exists()  # nothing says "finished"


@pytest.mark.slow
def test_an_exploding_projected_multiplier_stops_the_run_too(tmp_path, lore_cache):
    """--dual-lr 1e30 with the projected link (the embedded preset's; Adam from lambda = 1): lambda = relu(z) has
    no ceiling, the Lagrangian becomes non-finite and the run stops at that batch, naming the learning rates."""
    config = TrainConfig(model="digits-clip", method="lore", output=str(tmp_path / "run"), cache_dir=str(lore_cache),
                         max_steps=COLLAPSE_PATIENCE + 10, batch_size=16, eps=32 / 255, pgd_steps=2, primal_steps=1,
                         lr=1e-3, dual_lr=1e30, dual_hidden=32, probe_every=0, checkpoint_every=5, device="cpu",
                         dual_preset="embedded", dual_signal="rate", dual_init=1.0, dual_optimizer="adam", dual_beta1=0.0)
    with pytest.raises(FloatingPointError, match="met a non-finite loss or gradient.*--dual-lr"):
        train(config)
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
def test_a_sane_run_is_not_flagged(tmp_path, lore_cache):
    config = TrainConfig(model="digits-clip", method="lore", output=str(tmp_path / "run"), cache_dir=str(lore_cache),
                         max_steps=COLLAPSE_PATIENCE + 5, batch_size=16, eps=32 / 255, pgd_steps=2, primal_steps=1,
                         lr=1e-3, dual_hidden=32, probe_every=0, device="cpu")
    assert train(config).status == "finished"


def test_restart_advice_names_only_checkpoints_that_exist_and_are_finite(tmp_path):
    path = tmp_path / "last.pt"
    assert "No checkpoint was written yet" in restart_advice(path)
    torch.save({"step": 7, "encoder": {"w": torch.ones(2)}}, path)
    assert "last.pt (batch 7), holds finite weights" in restart_advice(path)
    torch.save({"step": 8, "encoder": {"w": torch.tensor([1.0, float("nan")])}}, path)
    assert "already holds non-finite weights" in restart_advice(path)
    path.write_bytes(b"garbage")
    assert "cannot be read" in restart_advice(path)
    assert "A --resume keeps the run's settings" in restart_advice(path)


def test_a_resume_drops_the_metrics_of_batches_it_will_train_again(tmp_path):
    """Killed at batch 7 with the last checkpoint at batch 5: batches 6 and 7 are trained and logged again."""
    import json

    from lore.training.run_folder import drop_metrics_after

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(8)) + '{"step": 8, "lo')  # torn
    drop_metrics_after(path, 5)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0, 1, 2, 3, 4, 5]


def test_the_unreadable_list_is_not_repeated_by_a_resume_and_starts_empty_for_a_new_run(tmp_path):
    import warnings

    from lore.data.unreadable import UnreadableLog as _UnreadableLog

    path = tmp_path / "unreadable_images.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = _UnreadableLog(path)
        first("a.jpg is broken")
        first("b.jpg is broken")
        resumed = _UnreadableLog(path, resume=True)
        resumed("a.jpg is broken")  # met again after the resume
        resumed("c.jpg is broken")
    assert path.read_text().splitlines() == ["a.jpg is broken", "b.jpg is broken", "c.jpg is broken"]
    assert resumed.count == 3
    assert _UnreadableLog(path).count == 0 and not path.exists()
