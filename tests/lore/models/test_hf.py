"""`--model hf:PATH`: `transformers` checkpoints in (CLIP, SigLIP, DINOv2) and out, checked against
`transformers`' own forward on tiny random models written offline."""

from __future__ import annotations

import pytest
import torch

from hf_checkpoints import PATCH, SIZE, clip_folder, dinov2_folder, normalised, siglip_folder

transformers = pytest.importorskip("transformers")

from lore.heads import class_text_embeddings  # noqa: E402
from lore.models.build import build_model, zero_shot_head  # noqa: E402
from lore.models.export import load_exported  # noqa: E402
from lore.training.config import TrainConfig  # noqa: E402
from lore.training.engine import train  # noqa: E402


def _build(folder, image_size=None):
    return build_model(f"hf:{folder}", None, image_size, cache_dir=folder.parent, seed=0, device=torch.device("cpu"))


def _pixels(n=4, size=SIZE, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make,kind", [(clip_folder, "hf-clip"), (siglip_folder, "hf-siglip"), (dinov2_folder, "hf-dinov2")])
def test_the_encoder_is_the_classes_own_image_embedding(tmp_path, make, kind):
    folder = make(tmp_path / kind)
    built = _build(folder)
    assert built.kind == kind and built.image_size == SIZE
    pixels = _pixels()
    with torch.no_grad():
        ours = built.encoder.eval()(pixels)
        if kind == "hf-clip":
            theirs = transformers.CLIPVisionModelWithProjection.from_pretrained(folder)(
                pixel_values=normalised(pixels)).image_embeds
        elif kind == "hf-siglip":
            theirs = transformers.SiglipVisionModel.from_pretrained(folder)(pixel_values=normalised(pixels)).pooler_output
        else:
            theirs = transformers.Dinov2Model.from_pretrained(folder)(pixel_values=normalised(pixels)).pooler_output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("make,vision_class,output", [
    (clip_folder, "CLIPVisionModelWithProjection", "image_embeds"),
    (siglip_folder, "SiglipVisionModel", "pooler_output"),
])
def test_round_trip_train_export_and_transformers_loads_the_tuned_tower(tmp_path, make, vision_class, output):
    """hf: model -> `lore train` 2 steps -> export -> transformers' vision class: its embedding equals lore's
    encoder on the same pixels (<= 1e-5, float32), the tower moved, and AutoModel loads the whole model."""
    folder = make(tmp_path / "source")
    run = tmp_path / "run"
    result = train(TrainConfig(model=f"hf:{folder}", data="digits", output=str(run), max_steps=2, batch_size=8,
                               pgd_steps=1, primal_steps=1, probe_every=0, method="lore", lr=1e-3, device="cpu"))
    assert result.status == "finished"
    export = run / "export"
    pixels = _pixels()
    with torch.no_grad():
        ours = load_exported(export).eval()(pixels)
        tower = getattr(transformers, vision_class).from_pretrained(export)
        theirs = getattr(tower(pixel_values=normalised(pixels)), output)
        before = getattr(getattr(transformers, vision_class).from_pretrained(folder)(pixel_values=normalised(pixels)), output)
    assert (ours - theirs).abs().max() <= 1e-5
    assert (theirs - before).abs().max() > 1e-4  # the export holds the fine-tuned tower, not the original
    whole = transformers.AutoModel.from_pretrained(export)
    source = transformers.AutoModel.from_pretrained(folder)
    for (name, tuned), (_, original) in zip(whole.state_dict().items(), source.state_dict().items()):
        if name.startswith("text_model") or name.startswith("text_projection"):
            assert torch.equal(tuned, original), name  # the text tower is the original one
    assert transformers.AutoTokenizer.from_pretrained(export)("a photo of a cat")["input_ids"]
    assert (export / "preprocessor_config.json").is_file()


def test_zero_shot_logits_equal_clipmodels_forward(tmp_path):
    """lore's zero-shot head on an hf: CLIP (its text tower, its own logit scale) gives transformers' CLIPModel
    logits_per_image on the same images and prompts (<= 1e-4)."""
    folder = clip_folder(tmp_path / "clip")
    built = _build(folder)
    classnames = ["cat", "dog", "bird"]
    pixels = _pixels()
    with torch.no_grad():
        embeddings = class_text_embeddings(built.clip, built.tokenizer, classnames, ["a photo of a {}."])
        ours = zero_shot_head(built, embeddings)(built.encoder.eval()(pixels))
        model = transformers.CLIPModel.from_pretrained(folder)
        tokens = transformers.AutoTokenizer.from_pretrained(folder)([f"a photo of a {c}." for c in classnames],
                                                                    padding=True, return_tensors="pt")
        theirs = model(**tokens, pixel_values=normalised(pixels)).logits_per_image
    assert (ours - theirs).abs().max() <= 1e-4


def test_siglip_zero_shot_has_its_own_scale_and_bias(tmp_path):
    folder = siglip_folder(tmp_path / "siglip")
    built = _build(folder)
    model = transformers.SiglipModel.from_pretrained(folder)
    assert built.logit_scale == pytest.approx(float(model.logit_scale.exp()))
    assert built.logit_bias == pytest.approx(float(model.logit_bias))
    classnames = ["cat", "dog"]
    pixels = _pixels()
    with torch.no_grad():
        embeddings = class_text_embeddings(built.clip, built.tokenizer, classnames, ["a photo of a {}."])
        ours = zero_shot_head(built, embeddings)(built.encoder.eval()(pixels))
        tokens = transformers.AutoTokenizer.from_pretrained(folder)([f"a photo of a {c}." for c in classnames],
                                                                    padding="max_length", max_length=16,
                                                                    return_tensors="pt")
        theirs = model(input_ids=tokens["input_ids"], pixel_values=normalised(pixels)).logits_per_image
    assert (ours - theirs).abs().max() <= 1e-4


@pytest.mark.parametrize("make", [clip_folder, siglip_folder])
def test_another_image_size_resamples_the_position_table_as_transformers_interpolates(tmp_path, make):
    """--image-size 48 on a 32 px checkpoint: the resampled table gives transformers' interpolate_pos_encoding=True
    forward of the original, and the config records the new size."""
    folder = make(tmp_path / "m")
    built = _build(folder, image_size=48)
    pixels = _pixels(size=48)
    vision_class = "CLIPVisionModelWithProjection" if make is clip_folder else "SiglipVisionModel"
    with torch.no_grad():
        ours = built.encoder.eval()(pixels)
        out = getattr(transformers, vision_class).from_pretrained(folder)(pixel_values=normalised(pixels),
                                                                           interpolate_pos_encoding=True)
        theirs = out.image_embeds if make is clip_folder else out.pooler_output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert built.hf.model.config.vision_config.image_size == 48
    with pytest.raises(ValueError, match="not a multiple of .*patch size 8"):
        _build(folder, image_size=SIZE + PATCH // 2)


def test_missing_folders_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*nothing is downloaded"):
        _build(tmp_path / "absent")
    folder = clip_folder(tmp_path / "clip")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no preprocessor_config.json"):
        _build(folder)
    other = dinov2_folder(tmp_path / "dino")
    config = (other / "config.json").read_text().replace('"Dinov2Model"', '"Dinov2ForImageClassification"')
    (other / "config.json").write_text(config)
    with pytest.raises(ValueError, match="Dinov2ForImageClassification is not supported"):
        _build(other)
