"""The embedded reference phi_0 ships with the package: every machine starts from the same weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lore.data.digits import load_digits_images
from lore.models import digits_clip
from lore.models.build import build_model
from lore.provenance import weights_sha256

SHIPPED = digits_clip.shipped_reference(16, 0)


def _record() -> dict:
    return json.loads(SHIPPED.with_suffix(".json").read_text())


def test_the_default_setting_ships_with_a_provenance_record():
    assert SHIPPED is not None and SHIPPED.stat().st_size > 1_000_000
    record = _record()
    assert record["file_sha256"] == digits_clip.file_sha256(SHIPPED)
    assert (record["image_size"], record["seed"], record["steps"]) == (16, 0, digits_clip.DEFAULT_STEPS)
    assert record["code"]["commit"] and record["code"]["dirty"] is False  # made from committed code
    assert {"processor", "machine", "torch", "threads"} <= set(record["machine"])
    assert 0.9 < record["test_zero_shot_accuracy"] <= 1.0


def test_the_shipped_tower_never_trained_on_the_test_digits():
    """Its record names the digits it saw: train + validation of the split, disjoint from test."""
    record = _record()
    parts = load_digits_images(16).splits(0)
    assert record["trained_on"]["parts"] == ["train", "validation"]
    assert record["trained_on"]["digits"] == len(parts.train) + len(parts.validation)
    assert record["trained_on"]["index_sha256"] == digits_clip.index_sha256(parts.pretraining().index)
    assert not set(parts.pretraining().index.tolist()) & set(parts.test.index.tolist())


def test_retraining_the_tower_sees_train_and_validation_only(tmp_path, monkeypatch):
    seen = []

    def record_data(data, **kwargs):
        seen.append(data)
        return digits_clip.DigitsCLIP().eval()

    monkeypatch.setattr(digits_clip, "train_digits_clip", record_data)
    build_model("digits-clip", "retrained", None, cache_dir=tmp_path, seed=0, device=torch.device("cpu"))
    parts = load_digits_images(16).splits(0)
    assert sorted(seen[0].index.tolist()) == sorted(parts.train.index.tolist() + parts.validation.index.tolist())


def test_build_model_loads_the_shipped_weights_without_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the shipped weights must be loaded, not retrained")

    monkeypatch.setattr(digits_clip, "train_digits_clip", no_training)
    built = build_model("digits-clip", None, None, cache_dir=tmp_path, seed=0, device=torch.device("cpu"))
    expected = digits_clip.DigitsCLIP()
    expected.load_state_dict(digits_clip.load_state_file(SHIPPED))
    assert weights_sha256(built.clip) == weights_sha256(expected)
    assert not any(tmp_path.iterdir())  # nothing written to the cache


def test_damaged_package_data_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    copy = shutil.copy(SHIPPED, folder / SHIPPED.name)
    shutil.copy(SHIPPED.with_suffix(".json"), folder / SHIPPED.with_suffix(".json").name)
    data = bytearray(open(copy, "rb").read())
    data[-1] ^= 0xFF
    open(copy, "wb").write(bytes(data))
    monkeypatch.setattr(digits_clip, "SHIPPED", folder)
    train = load_digits_images(16).splits(0).pretraining()
    with pytest.raises(ValueError, match="SHA-256"):
        digits_clip.load_or_train_digits_clip(train, tmp_path / "cache", seed=0)


def test_an_unknown_source_is_refused(tmp_path):
    train = load_digits_images(16).splits(0).pretraining()
    with pytest.raises(ValueError, match="shipped"):
        digits_clip.load_or_train_digits_clip(train, tmp_path, seed=0, source="downloaded")


@pytest.mark.slow
def test_retraining_here_reproduces_the_shipped_weights(tmp_path):
    """On the machine class that made them the builder reproduces the file bit for bit; elsewhere float
    reassociation may change the weights, and the zero-shot accuracy must still agree to 1 point."""
    record = _record()
    parts = load_digits_images(16).splits(0)
    model = digits_clip.load_or_train_digits_clip(parts.pretraining(), tmp_path, seed=0, source="retrained")
    rebuilt = tmp_path / digits_clip.reference_file_name(16, 0, digits_clip.DEFAULT_STEPS)
    if digits_clip.machine_fingerprint() == record["machine"]:
        assert digits_clip.file_sha256(rebuilt) == record["file_sha256"]
    accuracy = digits_clip.zero_shot_accuracy(model, parts.test)
    assert abs(accuracy - record["test_zero_shot_accuracy"]) <= 0.01
