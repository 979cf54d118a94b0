"""Test-wide settings."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def lore_cache(tmp_path_factory):
    """A cache folder for built reference models, shared by the tests of one process."""
    return tmp_path_factory.mktemp("lore-cache")


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def tiny_clip_dir(tmp_path):
    """An open_clip `local-dir` folder (config + safetensors weights) of a tiny random CLIP, written here."""
    import json

    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    clip = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def write_digit_folder(root, rows):
    """Writes digits `rows` as PNGs into an ImageFolder tree at `root` (one sub-folder per digit name)."""
    from PIL import Image

    from lore import load_digits_images

    digits = load_digits_images(32)
    for i in rows:
        folder = root / digits.classnames[int(digits.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(folder / f"{i}.png")
    return root


@pytest.fixture
def write_digits():
    """`write_digit_folder`, for tests that lay out their own image folders."""
    return write_digit_folder


@pytest.fixture
def digit_folders(tmp_path):
    """(train, val) ImageFolder trees of 32x32 digit PNGs written here."""
    return write_digit_folder(tmp_path / "train", range(0, 80)), write_digit_folder(tmp_path / "val", range(80, 120))
