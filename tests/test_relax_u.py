"""tools/relax_u.py: u(x) = lambda(x) / price of a relaxed LORE run, on the digits its probe read, beside FARE's
deviation at the same radius and seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import relax_u  # noqa: E402

from lore.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def relax_runs(tmp_path_factory, lore_cache):
    """A FARE run and a LORE run relaxed at price 4 whose dual never moves (dual lr 0, lambda starts at 1), at
    16/255, seed 0, two batches each, in the `--sweep relax` layout."""
    out = tmp_path_factory.mktemp("relax")
    common = ["--eps", "16/255", "--seed", "0", "--max-steps", "2", "--batch-size", "16", "--pgd-steps", "1",
              "--probe-every", "0", "--cache-dir", str(lore_cache), "--device", "cpu"]
    assert main(["train", "--method", "fare", "--output", str(out / "runs" / "fare-eps16of255-seed0"), *common]) == 0
    assert main(["train", "--method", "lore", "--relax", "quadratic", "--relax-price", "4", "--dual-lr", "0",
                 "--dual-init", "1", "--output", str(out / "runs" / "lore-rho0.1-relax4-eps16of255-seed0"),
                 *common]) == 0
    return out


def test_u_is_lambda_over_the_price_and_fares_deviation_is_its_encoders(relax_runs, tmp_path):
    """lambda(x) = 1 for every digit (softplus network at its initial value, never updated), so u(x) = 1 / 4 for
    each; FARE's deviation is recomputed here from its exported encoder (`lore.load_exported`), not the tool's."""
    from lore import load_exported

    (record,) = relax_u.analyse(relax_runs)
    assert record["price"] == 4 and record["train_eps"] == "16/255" and record["split"] == "test"
    assert len(record["u"]) == 454 and torch.allclose(record["u"], torch.full((454,), 0.25, dtype=torch.float64),
                                                      atol=1e-6)
    fare = load_exported(relax_runs / "runs" / "fare-eps16of255-seed0" / "export").eval()
    images, _ = relax_u.split_images(relax_u.TrainConfig(), 16)
    config, _ = relax_u.load_run(relax_runs / "runs" / "fare-eps16of255-seed0")
    reference = relax_u.encoder_of(config)
    with torch.no_grad():
        base, moved = reference(images[:20]).double(), fare(images[:20]).double()
    expected = (moved - base).pow(2).sum(1) / base.pow(2).sum(1)
    assert torch.allclose(record["fare_deviation"][:20], expected, rtol=1e-5, atol=1e-9)
    assert float(record["fare_deviation"].min()) > 0  # FARE moved every digit

    figure = tmp_path / "u.png"
    assert relax_u.main(["--runs", str(relax_runs), "--out", str(figure)]) == 0
    row, = json.loads(figure.with_suffix(".json").read_text())["rows"]
    assert row["relaxed_share"] == 1.0 and row["u_mean"] == pytest.approx(0.25, abs=1e-6)
    with torch.no_grad():
        margins = 0.1 * reference(images).double().pow(2).sum(1)  # rho ||phi_0(x)||^2 over all 454 digits
    assert row["u_over_margin_mean"] == pytest.approx(float((0.25 / margins).mean()), rel=1e-3)
    assert set(row["u_by_class"]) == {str(d) for d in range(10)} and figure.stat().st_size > 0


def test_a_folder_without_a_relaxed_run_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match="holds no relaxed LORE run"):
        relax_u.analyse(tmp_path)
