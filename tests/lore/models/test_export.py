"""Exports load back, and a tampered export is named (file and field), not a traceback."""

from __future__ import annotations

import json

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
