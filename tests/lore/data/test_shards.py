"""webdataset shards by random access: the index, the decoded items, and the errors that name what is wrong."""

from __future__ import annotations

import pickle

import pytest
import torch

from lore.data.images import as_float_pixels, build_dataset, load_digits_images
from lore.data.specs import UnreadableImageError
from lore.data.shards import ShardImages, shard_paths
from lore.training.loader import GlobalBatchSampler


def test_every_sample_with_an_image_is_indexed_in_shard_order_with_its_label(tmp_path, write_shards):
    spec = write_shards(tmp_path / "shards", shards=3, per_shard=10, corrupt=1, without_image=2)
    data = build_dataset(spec, 32)
    assert isinstance(data, ShardImages) and len(data) == 31 and len(data.without_image) == 2
    digits = load_digits_images(32)
    image, label, index = data[12]
    assert index == 12 and label == int(digits.labels[12])
    torch.testing.assert_close(as_float_pixels(image), digits.images[12], atol=1 / 255, rtol=0)  # the PNG round trip, 8-bit
    assert data.labels[:30].tolist() == digits.labels[:30].tolist()
    assert data.source(12).endswith("0001.tar:000012.png")
    with pytest.raises(UnreadableImageError, match="0002.tar:bad000.png cannot be decoded"):
        data[30]


def test_a_worker_copy_opens_its_own_files(tmp_path, write_shards):
    data = build_dataset(write_shards(tmp_path / "shards", shards=1, per_shard=4), 32)
    data[0]
    copy = pickle.loads(pickle.dumps(data))
    assert copy._handles == {} and torch.equal(copy[1][0], data[1][0])


def test_the_global_sampler_splits_shard_samples_across_ranks_once_per_epoch(tmp_path, write_shards):
    data = build_dataset(write_shards(tmp_path / "shards", shards=2, per_shard=16), 32)
    seen = []
    for rank in (0, 1):
        for batch in GlobalBatchSampler(len(data), 4, world_size=2, rank=rank, seed=0, start_step=0, total_steps=4):
            seen += [data.source(i) for i in batch]
    assert sorted(seen) == sorted(data.source(i) for i in range(len(data)))  # each of the 32 once


def test_bad_specs_are_named(tmp_path, write_shards):
    with pytest.raises(ValueError, match="streams .* cannot be read by random access"):
        shard_paths("wds:pipe:curl -s http://example.com/{0..3}.tar")
    with pytest.raises(FileNotFoundError, match="1 of 2 shards are missing, e.g. .*0001.tar"):
        write_shards(tmp_path / "one", shards=1, per_shard=2)
        shard_paths(f"wds:{tmp_path}/one/{{0000..0001}}.tar")
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "0000.tar").write_bytes(b"\x1f\x8b" + b"0" * 600)
    with pytest.raises(ValueError, match="not an uncompressed tar file"):
        build_dataset(f"wds:{tmp_path}/gz/0000.tar", 32)
    with pytest.raises(ValueError, match="classes selects class folders"):
        build_dataset(f"wds:{tmp_path}/one/0000.tar", 32, classes=["a", "b"])


def _tar(path, members: dict[str, bytes]):
    """An uncompressed tar with these members, in order (the same name twice is allowed by tar)."""
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items() if isinstance(members, dict) else members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return f"wds:{path}"


def _image(fmt: str) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, fmt)
    return buffer.getvalue()


def test_images_of_every_format_pil_decodes_are_samples(tmp_path):
    """A shard of 8 .png and 16 .bmp samples trained on the 8 with no message: .bmp was not an image extension."""
    members = {f"{i:03d}.png": _image("PNG") for i in range(8)}
    members.update({f"b{i:03d}.bmp": _image("BMP") for i in range(16)})
    data = build_dataset(_tar(tmp_path / "mixed.tar", members), 8)
    assert len(data) == 24 and data.without_image == []
    assert as_float_pixels(data[20][0]).shape == (3, 8, 8)


@pytest.mark.parametrize("text", ["²", "3.0", "cat", "+4", "-1", "123456789012345678901"])
def test_a_cls_member_that_is_not_a_class_id_is_refused_naming_shard_and_member(tmp_path, text):
    """'3.0', 'cat' and '+4' became -1 (unlabelled) silently; '²' and a 20-digit number aborted naming nothing."""
    spec = _tar(tmp_path / "labels.tar", {"000.png": _image("PNG"), "000.cls": text.encode()})
    with pytest.raises(ValueError, match=r"labels.tar: member 000.cls holds .*not a class id"):
        build_dataset(spec, 8)
    assert build_dataset(_tar(tmp_path / "ok.tar", {"000.png": _image("PNG"), "000.cls": b" 7\n"}), 8).labels.tolist() == [7]


def test_a_key_that_appears_twice_is_refused(tmp_path):
    """A duplicate key paired the first image with the second label and dropped the second image."""
    members = [("000.png", _image("PNG")), ("000.cls", b"1"), ("000.png", _image("PNG")), ("000.cls", b"2")]
    with pytest.raises(ValueError, match="member 000.png appears twice"):
        build_dataset(_tar(tmp_path / "dup.tar", members), 8)


def test_samples_without_an_image_are_listed_with_the_unreadable_ones(tmp_path, write_shards):
    """ShardImages counted them (without_image) and nothing read it: now the run lists and counts them."""
    from lore.data.unreadable import UnreadableLog
    from lore.training.run_data import note_samples_without_image as _note_samples_without_image

    data = build_dataset(write_shards(tmp_path / "shards", shards=1, per_shard=4, without_image=2), 32)
    log = UnreadableLog(tmp_path / "unreadable_images.txt")
    with pytest.warns(UserWarning, match="2 shard sample"):
        _note_samples_without_image(data, log)
    assert log.without_image == 2 and log.count == 0
    assert (tmp_path / "unreadable_images.txt").read_text().count("no image member; left out") == 2
    with pytest.raises(UnreadableImageError, match="2 shard sample.* hold no image member"):
        _note_samples_without_image(data, None)  # --no-skip-unreadable: stop, naming them
