"""Test-wide settings and fixtures."""

import copy
import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)


import pytest  # noqa: E402

from lore import load_digits_images, pretrain_classifier, small_digits_encoder  # noqa: E402


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


def write_digit_shards(root, shards: int, per_shard: int, *, corrupt: int = 0, without_image: int = 0):
    """webdataset shards of digit PNGs (`webdataset.TarWriter`, the img2dataset layout: KEY.png, KEY.cls,
    KEY.txt), `root/{0000..}.tar`; `corrupt` extra samples carry bytes that are no image, `without_image` extra
    keys a caption only. Returns the `wds:` spec."""
    import io

    import webdataset
    from PIL import Image

    from lore import load_digits_images

    digits = load_digits_images(32)
    root.mkdir(parents=True, exist_ok=True)
    index = 0
    for shard in range(shards):
        with webdataset.TarWriter(str(root / f"{shard:04d}.tar")) as sink:
            for _ in range(per_shard):
                buffer = io.BytesIO()
                Image.fromarray((digits.images[index].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(buffer, "PNG")
                label = int(digits.labels[index])
                sink.write({"__key__": f"{index:06d}", "png": buffer.getvalue(), "cls": str(label).encode(),
                            "txt": f"a photo of the digit {digits.classnames[label]}".encode()})
                index += 1
            if shard == shards - 1:
                for j in range(corrupt):
                    sink.write({"__key__": f"bad{j:03d}", "png": b"not an image", "cls": b"0"})
                for j in range(without_image):
                    sink.write({"__key__": f"caption{j:03d}", "txt": b"a caption without its image"})
    return f"wds:{root}/{{0000..{shards - 1:04d}}}.tar"


@pytest.fixture
def write_shards():
    """`write_digit_shards`, for tests that write their own webdataset shards."""
    return write_digit_shards


@pytest.fixture
def write_digits():
    """`write_digit_folder`, for tests that lay out their own image folders."""
    return write_digit_folder


@pytest.fixture
def digit_folders(tmp_path):
    """(train, val) ImageFolder trees of 32x32 digit PNGs written here."""
    return write_digit_folder(tmp_path / "train", range(0, 80)), write_digit_folder(tmp_path / "val", range(80, 120))


# A tiny real setting shared by the lore, attack, evaluation and pipeline tests: a small encoder pretrained on
# scikit-learn digits, and an undefended digits classifier (encoder + linear head).


@pytest.fixture(scope="session")
def digits_split():
    """(train + validation, test) of the digits split: what pretraining may see, and the held-out test digits."""
    parts = load_digits_images(16).splits(0)
    return parts.pretraining(), parts.test


@pytest.fixture(scope="session")
def _pretrained(digits_split):
    train, _ = digits_split
    torch.manual_seed(0)
    encoder = small_digits_encoder(embed_dim=32, width=16)
    head = pretrain_classifier(encoder, train, steps=100, seed=0)
    return copy.deepcopy(encoder.state_dict()), head


@pytest.fixture
def pretrained_encoder(_pretrained):
    """A fresh copy of the pretrained digits encoder (phi_0) and its linear classifier head."""
    state, head = _pretrained
    encoder = small_digits_encoder(embed_dim=32, width=16)
    encoder.load_state_dict(state)
    return encoder, copy.deepcopy(head)


@pytest.fixture(scope="session")
def _digits():
    torch.manual_seed(0)
    parts = load_digits_images(16).splits(0)
    train, test = parts.pretraining(), parts.test
    encoder = small_digits_encoder(embed_dim=32, width=16)
    head = pretrain_classifier(encoder, train, steps=200, seed=0)
    model = torch.nn.Sequential(encoder, head).eval().requires_grad_(False)
    return model, test.images[:200], test.labels[:200], test.images, test.labels


@pytest.fixture(scope="session")
def digits_classifier(_digits):
    """(model, 200 held-out images, their labels)."""
    return _digits[:3]


@pytest.fixture(scope="session")
def digits_held_out(_digits):
    """(model, all 449 held-out images, their labels), for comparisons that need many points."""
    return _digits[0], _digits[3], _digits[4]


SLOW_FOLDERS = ("pipeline", "benchmarks")


def pytest_collection_modifyitems(config, items):
    """Everything under tests/pipeline and tests/benchmarks is the slow tier, marked or not."""
    for item in items:
        parts = item.path.relative_to(config.rootpath).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def all_standins(tmp_path_factory):
    """(root, what was written): a stand-in of every paper benchmark dataset in its release layout
    (tests/benchmark_standins.py), written once per session."""
    from benchmark_standins import write_all

    root = tmp_path_factory.mktemp("benchmark-data")
    return root, write_all(root)
