"""Every loading path, on files the test writes: open_clip config + checkpoint, local-dir, timm/DINOv2."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from lore import ZeroShotHead, class_text_embeddings, load_open_clip, load_state_file, load_timm
from lore.models.encoders import save_state_file

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    (folder / "tiny-clip-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "tiny-clip-test"


def test_open_clip_by_name_wraps_the_image_tower(tiny_clip_name):
    model = load_open_clip(tiny_clip_name)
    images = torch.rand(2, 3, 32, 32)
    assert model.image_size == (32, 32)
    assert model.encoder.embed_dim == 32
    expected = model.clip.encode_image((images - model.encoder.mean) / model.encoder.std)
    assert torch.allclose(model.encoder(images), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.encoder(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_open_clip_local_checkpoint_file(tiny_clip_name, tmp_path, suffix):
    torch.manual_seed(1)
    source = load_open_clip(tiny_clip_name)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.clip.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    torch.manual_seed(2)
    loaded = load_open_clip(tiny_clip_name, pretrained=str(path))
    images = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded.encoder(images), source.encoder(images), atol=1e-6)


def test_open_clip_local_dir(tiny_clip_name, tmp_path):
    source = load_open_clip(tiny_clip_name)
    folder = tmp_path / "my-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in source.clip.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    loaded = load_open_clip(f"local-dir:{folder}")
    images = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded.encoder(images), source.encoder(images), atol=1e-6)
    with pytest.raises(ValueError, match="local-dir folder carries its weights"):
        load_open_clip(f"local-dir:{folder}", pretrained="openai")


def test_missing_checkpoint_file_is_named(tiny_clip_name, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_open_clip(tiny_clip_name, pretrained=str(tmp_path / "nope.safetensors"))


def test_zero_shot_head_from_the_text_tower(tiny_clip_name):
    model = load_open_clip(tiny_clip_name)
    classes = class_text_embeddings(model.clip, model.tokenizer, ["cat", "dog", "car"], ["a photo of a {}.", "a {}."])
    assert classes.shape == (3, 32)
    assert torch.allclose(classes.norm(dim=1), torch.ones(3), atol=1e-5)
    logits = ZeroShotHead(classes)(model.encoder(torch.rand(4, 3, 32, 32)))
    assert logits.shape == (4, 3) and logits.abs().max() <= 100 + 1e-4
    with pytest.raises(ValueError, match="'\\{\\}' slot"):
        class_text_embeddings(model.clip, model.tokenizer, ["cat"], ["no slot"])


def test_timm_dinov2_with_a_local_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = load_timm("vit_small_patch14_dinov2", image_size=28)
    path = tmp_path / "dinov2_s.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    torch.manual_seed(1)
    loaded = load_timm("vit_small_patch14_dinov2", checkpoint=path, image_size=28)
    images = torch.rand(2, 3, 28, 28)
    assert loaded.embed_dim == 384
    assert torch.allclose(loaded(images), source(images), atol=1e-5)
    assert loaded.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_timm_checkpoint_that_does_not_fit_is_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"some.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="does not fit"):
        load_timm("vit_small_patch14_dinov2", checkpoint=path, image_size=28)


def test_corrupt_and_foreign_weight_files_give_clear_errors(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(ValueError, match="could not read weights from .*broken.safetensors"):
        load_state_file(broken)
    truncated = tmp_path / "trunc.pt"
    torch.save({"w": torch.zeros(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:50])
    with pytest.raises(ValueError, match="could not read weights"):
        load_state_file(truncated)
    foreign = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], foreign)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_state_file(foreign)


class _NotATensor:
    """Stands for arbitrary pickled code in an untrusted checkpoint."""


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "untrusted.pt"
    torch.save({"w": torch.zeros(2), "payload": _NotATensor()}, path)
    with pytest.raises(ValueError, match="could not read weights"):
        load_state_file(path)  # weights_only=True refuses to unpickle _NotATensor


def test_save_state_file_round_trips_and_leaves_no_temporary(tmp_path):
    from lore.models.encoders import save_state_file

    state = {"w": torch.randn(3, 4), "b": torch.arange(5.0)[::2]}  # non-contiguous on purpose
    path = save_state_file(state, tmp_path / "deep" / "w.safetensors")
    loaded = load_state_file(path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]


def _small_image_encoder():
    from lore import ImageEncoder

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(6))
    encoder = ImageEncoder(backbone, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), embed_dim=6)
    encoder(torch.rand(1, 3, 8, 8))  # materialise the lazy layer
    return encoder


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_image_encoder_refuses_integer_images_instead_of_returning_nan(dtype):
    encoder = _small_image_encoder()
    with pytest.raises(TypeError, match=f"floating point pixels in \\[0, 1\\], got dtype {dtype}"):
        encoder(torch.randint(0, 255, (2, 3, 8, 8), dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_image_encoder_accepts_half_and_double_images(dtype):
    encoder = _small_image_encoder()
    images = torch.rand(2, 3, 8, 8)
    expected = encoder(images)
    got = encoder(images.to(dtype))
    assert got.dtype == torch.float32 and torch.allclose(got, expected, atol=2e-2 if dtype == torch.float16 else 1e-6)


def test_a_dinov2_checkpoint_saved_at_518_px_loads_at_224_with_resampled_position_embeddings(tmp_path):
    """timm's default DINOv2 resolution is 518 px (a 37x37 patch grid); loading its weights at 224 px (16x16)
    must resample the grid, keep the class token's embedding and every other weight, and run at 224 px."""
    torch.manual_seed(0)
    source = load_timm("vit_small_patch14_dinov2")  # 518 px
    state = {k: v.clone().contiguous() for k, v in source.backbone.state_dict().items()}
    grid = state["pos_embed"][:, 1:].reshape(1, 37, 37, -1)
    ramp = torch.linspace(-1.0, 1.0, 37)
    state["pos_embed"][:, 1:] = (grid * 0 + ramp[None, :, None, None]).reshape(1, 37 * 37, -1)  # rows: a linear ramp
    path = tmp_path / "dinov2_518.safetensors"
    save_file(state, str(path))
    loaded = load_timm("vit_small_patch14_dinov2", checkpoint=path, image_size=224)
    pos = loaded.backbone.state_dict()["pos_embed"]
    assert pos.shape == (1, 1 + 16 * 16, 384)
    torch.testing.assert_close(pos[:, 0], state["pos_embed"][:, 0])  # the class token's embedding is kept
    rows = pos[:, 1:].reshape(16, 16, 384)
    assert torch.all(rows[1:, :, 0] > rows[:-1, :, 0])  # the ramp survives resampling: increasing down the rows
    assert abs(float(rows[:, :, 0].std(dim=1).max())) < 1e-4  # and constant along each row
    torch.testing.assert_close(loaded.backbone.state_dict()["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    with torch.no_grad():
        assert loaded(torch.rand(1, 3, 224, 224)).shape == (1, 384)


def test_open_clip_weights_saved_at_224_load_at_another_resolution(tmp_path):
    torch.manual_seed(0)
    source = load_open_clip("ViT-B-32")  # 224 px: a 7x7 grid of 32-px patches
    path = tmp_path / "vit_b32.safetensors"
    save_file({k: v.contiguous() for k, v in source.clip.state_dict().items()}, str(path))
    loaded = load_open_clip("ViT-B-32", str(path), image_size=96)  # a 3x3 grid
    assert loaded.image_size == (96, 96)
    position = loaded.clip.visual.positional_embedding
    assert position.shape == (1 + 3 * 3, 768)
    torch.testing.assert_close(position[0], source.clip.visual.positional_embedding[0])  # the class token's
    with torch.no_grad():
        assert loaded.encoder(torch.rand(1, 3, 96, 96)).shape == (1, 512)


def test_an_image_size_the_patches_do_not_tile_is_refused(tmp_path):
    """timm asserted at the first forward ("Input height (100) should be divisible by patch size (16)"); other ViTs
    dropped the last pixel rows silently. Both are refused when the model is built, naming the nearest sizes."""
    with pytest.raises(ValueError, match="image_size 100 is not a multiple of timm:test_vit's patch size 16.*96 or 112"):
        load_timm("test_vit", image_size=100)
    assert load_timm("test_vit", image_size=96).embed_dim > 0
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    save_state_file(open_clip.create_model(f"local-dir:{folder}", load_weights=False).state_dict(),
                    folder / "open_clip_model.safetensors")
    with pytest.raises(ValueError, match="image_size 36 is not a multiple of .*patch size 8.*32 or 40"):
        load_open_clip(f"local-dir:{folder}", image_size=36)
