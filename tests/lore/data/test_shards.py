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
