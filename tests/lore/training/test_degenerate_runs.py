"""A degenerate run is not a finished run: a collapsed multiplier stops training with a message that names
what is left to restart from, checked rather than assumed."""

from __future__ import annotations

import pytest
import torch

from lore.training.config import TrainConfig
from lore.training.engine import COLLAPSE_PATIENCE, _restart_advice, train


@pytest.mark.slow
def test_a_collapsed_multiplier_stops_the_run_instead_of_finishing_it(tmp_path, lore_cache):
    """--dual-lr 1e30: from the second batch lambda(x) = 0 on every sample while all of them violate."""
    config = TrainConfig(model="digits-clip", method="lore", output=str(tmp_path / "run"), cache_dir=str(lore_cache),
                         max_steps=COLLAPSE_PATIENCE + 10, batch_size=16, eps=32 / 255, pgd_steps=2, primal_steps=1,
                         lr=1e-3, dual_lr=1e30, dual_hidden=32, probe_every=0, checkpoint_every=5, device="cpu")
    with pytest.raises(FloatingPointError, match="the multiplier collapsed.*--dual-lr 1e\\+30.*holds finite weights"):
        train(config)
    assert not (tmp_path / "run" / "summary.json").exists()  # nothing says "finished"


@pytest.mark.slow
def test_a_sane_run_is_not_flagged(tmp_path, lore_cache):
    config = TrainConfig(model="digits-clip", method="lore", output=str(tmp_path / "run"), cache_dir=str(lore_cache),
                         max_steps=COLLAPSE_PATIENCE + 5, batch_size=16, eps=32 / 255, pgd_steps=2, primal_steps=1,
                         lr=1e-3, dual_hidden=32, probe_every=0, device="cpu")
    assert train(config).status == "finished"


def test_restart_advice_names_only_checkpoints_that_exist_and_are_finite(tmp_path):
    path = tmp_path / "last.pt"
    assert "No checkpoint was written yet" in _restart_advice(path)
    torch.save({"step": 7, "encoder": {"w": torch.ones(2)}}, path)
    assert "last.pt (batch 7), holds finite weights" in _restart_advice(path)
    torch.save({"step": 8, "encoder": {"w": torch.tensor([1.0, float("nan")])}}, path)
    assert "already holds non-finite weights" in _restart_advice(path)
    path.write_bytes(b"garbage")
    assert "cannot be read" in _restart_advice(path)
    assert "A --resume keeps the run's settings" in _restart_advice(path)
