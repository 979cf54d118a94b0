"""Exports load back, and a tampered export is named (file and field), not a traceback."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from lore.models.build import build_model
from lore.models.export import export_encoder, load_exported


@pytest.fixture
def export(tmp_path, lore_cache):
    built = build_model("digits-cnn", None, None, cache_dir=lore_cache, seed=0, device=torch.device("cpu"))
    folder = export_encoder(built, "digits-cnn", tmp_path / "export")
    return built, folder


def test_an_export_loads_back_equal(export):
    built, folder = export
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_exported(folder)(images), built.encoder(images))


@pytest.mark.parametrize("spec, needle", [("{not json", "is not valid JSON"),
                                          ('{"kind": "mystery"}', "kind must be one of"),
                                          ("lacks_embed_dim", "lacks embed_dim")])
def test_a_tampered_encoder_json_is_named(export, spec, needle):
    _, folder = export
    if spec == "lacks_embed_dim":
        values = json.loads((folder / "encoder.json").read_text())
        del values["embed_dim"]
        spec = json.dumps(values)
    (folder / "encoder.json").write_text(spec)
    with pytest.raises(ValueError, match=needle):
        load_exported(folder)


@pytest.mark.parametrize("field, value, needle", [
    ("embed_dim", "32", "embed_dim must be a positive integer, got '32'"),
    ("std", [0.2, float("nan"), 0.2], "std must be a list of finite numbers"),
    ("std", [0.2, 0.0, 0.2], "std must be positive"),
    ("mean", "abc", "mean must be a list of finite numbers (one per channel), got 'abc'"),
    ("mean", [0.5, 0.5], "mean and std must have one entry per channel each, got 2 and 3"),
    ("image_size", "16", "image_size must be a positive integer, got '16'"),
    ("image_size", -16, "image_size must be a positive integer, got -16"),
    ("image_size", 16.0, "image_size must be a positive integer, got 16.0")])
def test_a_mistyped_encoder_json_field_is_named_with_its_value(export, field, value, needle):
    """Before: tracebacks for embed_dim/std/mean, and "lacks image_size" for a mistyped image_size."""
    _, folder = export
    values = {**json.loads((folder / "encoder.json").read_text()), field: value}
    (folder / "encoder.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match=re.escape(f"encoder.json: {needle}")):
        load_exported(folder)


def test_a_timm_export_names_its_model_with_or_without_the_prefix(tmp_path, monkeypatch):
    """A timm export's model is "timm:NAME"; a bare "test_vit" was sliced to "vit" before."""
    from lore.models import export as export_module

    asked = []
    monkeypatch.setattr(export_module, "load_timm", lambda name, **kwargs: asked.append(name))
    for model in ("timm:test_vit", "test_vit"):
        (tmp_path / "encoder.json").write_text(json.dumps({"kind": "timm", "model": model, "image_size": 32}))
        load_exported(tmp_path)
    assert asked == ["test_vit", "test_vit"]
    (tmp_path / "encoder.json").write_text(json.dumps({"kind": "timm", "model": "timm:", "image_size": 32}))
    with pytest.raises(ValueError, match="model must name a timm model"):
        load_exported(tmp_path)


def test_foreign_weights_are_named(export):
    from safetensors.torch import load_file

    _, folder = export
    weights = folder / "encoder.safetensors"
    original = load_file(str(weights))
    save_file({"something.else": torch.zeros(2)}, str(weights))
    with pytest.raises(ValueError, match="does not hold a digits encoder"):
        load_exported(folder)
    save_file({**original, "foreign.key": torch.zeros(2)}, str(weights))
    with pytest.raises(ValueError, match="does not fit the encoder .*encoder.json describes"):
        load_exported(folder)


@pytest.mark.slow  # builds the digits CLIP at 24 px (about 40 s)
def test_an_export_is_evaluated_at_the_resolution_it_was_trained_at(tmp_path, lore_cache):
    """Trained at --image-size 24, the export must not be evaluated at the digits' default 16 px."""
    from lore.evaluation.run import load_model

    for name in ("digits-cnn", "digits-clip"):
        built = build_model(name, None, 24, cache_dir=lore_cache, seed=0, device=torch.device("cpu"))
        folder = export_encoder(built, name, tmp_path / name)
        assert json.loads((folder / "encoder.json").read_text())["image_size"] == 24
        loaded = load_model(str(folder), None, None, cache_dir=str(lore_cache), seed=0, device=torch.device("cpu"))
        assert loaded.image_size == 24, name
        assert load_model(str(folder), None, 32, cache_dir=str(lore_cache), seed=0,
                          device=torch.device("cpu")).image_size == 32  # an explicit --image-size wins
