"""The training data pipeline: the global-batch sampler's guarantees, worker processes, class lists, speed switches."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lore.data.folders import folder_classnames
from lore.data.images import build_dataset, epoch_order, read_class_list
from lore.data.specs import UnreadableImageError
from lore.training.loader import GlobalBatchSampler, training_batches


def reference_batches(num_samples, batch_size, world_size, rank, seed, total):
    """The batches, written out the direct way: epoch permutation, global batch, this rank's slice."""
    global_batch = batch_size * world_size
    per_epoch = num_samples // global_batch
    out = []
    for step in range(total):
        epoch, position = divmod(step, per_epoch)
        order = epoch_order(num_samples, epoch, seed)
        chunk = order[position * global_batch:(position + 1) * global_batch]
        out.append(chunk[rank * batch_size:(rank + 1) * batch_size].tolist())
    return out


@settings(max_examples=40, deadline=None)
@given(num_samples=st.integers(4, 60), batch_size=st.integers(1, 5), world_size=st.integers(1, 3),
       seed=st.integers(0, 5), total=st.integers(1, 25), start_fraction=st.floats(0, 1))
def test_sampler_gives_every_rank_its_slice_and_resumes_exactly(num_samples, batch_size, world_size, seed, total,
                                                                  start_fraction):
    if batch_size * world_size > num_samples:
        return
    start = int(start_fraction * total)
    for rank in range(world_size):
        full = list(GlobalBatchSampler(num_samples, batch_size, world_size=world_size, rank=rank, seed=seed,
                                       total_steps=total))
        assert full == reference_batches(num_samples, batch_size, world_size, rank, seed, total)
        resumed = GlobalBatchSampler(num_samples, batch_size, world_size=world_size, rank=rank, seed=seed,
                                     start_step=start, total_steps=total)
        assert list(resumed) == full[start:] and len(resumed) == total - start
    per_epoch = num_samples // (batch_size * world_size)
    for step in range(min(total, per_epoch)):  # within an epoch no image repeats, across ranks or steps
        seen = [i for rank in range(world_size) for i in list(GlobalBatchSampler(
            num_samples, batch_size, world_size=world_size, rank=rank, seed=seed, total_steps=step + 1))[step]]
        assert len(set(seen)) == len(seen)


def test_worker_processes_deliver_the_same_batches_as_the_training_process(tmp_path, write_digits):
    folder = write_digits(tmp_path / "images", range(48))
    dataset = build_dataset(str(folder), 16)
    sampler = GlobalBatchSampler(len(dataset), 8, seed=3, total_steps=9)
    inline = list(training_batches(dataset, sampler, workers=0))
    parallel = list(training_batches(dataset, sampler, workers=2, prefetch=2))
    assert len(inline) == len(parallel) == 9
    for (xa, ya, ia), (xb, yb, ib) in zip(inline, parallel):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
        assert xa.shape == (8, 3, 16, 16)


def test_unreadable_images_are_replaced_in_the_workers_and_reported(tmp_path, write_digits):
    folder = write_digits(tmp_path / "images", range(24))
    victim = sorted(folder.rglob("*.png"))[0]
    victim.write_bytes(b"not an image")
    dataset = build_dataset(str(folder), 16)
    sampler = GlobalBatchSampler(len(dataset), 24, total_steps=1)
    seen = []
    images, _, indices = next(training_batches(dataset, sampler, workers=2, on_unreadable=seen.append))
    assert len(seen) == 1 and str(victim) in seen[0]
    assert images.shape[0] == 24 and 0 not in indices.tolist()  # item 0 was replaced by the next readable one
    with pytest.raises(UnreadableImageError, match=victim.name):
        list(training_batches(dataset, sampler, workers=2))


def test_imagenet100_is_the_standard_list_and_selects_folders_with_real_names(tmp_path, write_digits):
    from timm.data import ImageNetInfo

    wnids = read_class_list("imagenet100")
    assert len(wnids) == 100 == len(set(wnids)) and set(wnids) <= set(ImageNetInfo().label_names())
    assert wnids[:3] == ["n02869837", "n01749939", "n02488291"]  # CMC's imagenet100.txt begins so
    root = tmp_path / "imagenet" / "train"
    for wnid in ["n01440764", "n02869837", "n01749939", "n09999999"][:3]:
        (root / wnid).mkdir(parents=True)
    for i, wnid in enumerate(sorted(p.name for p in root.iterdir())):
        write_digits(tmp_path / "tmp", [i])
        for png in (tmp_path / "tmp").rglob("*.png"):
            png.rename(root / wnid / png.name)
    listed = tmp_path / "two.txt"
    listed.write_text("# my subset\nn02869837\nn01749939\n")
    dataset = build_dataset(str(root), 16, classes=read_class_list(str(listed)))
    assert dataset.classnames == ("green mamba", "poke bonnet") and len(dataset) == 2  # sorted ids, OpenAI names
    import json

    import clip_benchmark
    from pathlib import Path

    names = json.loads((Path(clip_benchmark.__file__).parent / "datasets" / "en_classnames.json").read_text())["imagenet1k"]
    order = ImageNetInfo().label_names()
    assert dataset.classnames == tuple(names[order.index(w)] for w in ("n01749939", "n02869837"))
    with pytest.raises(ValueError, match="98 of the 100 listed class folders are missing"):
        build_dataset(str(root), 16, classes=wnids)
    assert folder_classnames(["golden_retriever", "tabby"]) == ("golden retriever", "tabby")


def test_grad_checkpointing_and_channels_last_keep_the_gradients(tiny_clip_dir):
    """Recomputed activations and another memory layout: the same gradients (checkpointing: exactly)."""
    from lore.models.encoders import load_open_clip
    from lore.training.placement import enable_grad_checkpointing

    encoder = load_open_clip(f"local-dir:{tiny_clip_dir}").encoder.train()
    images = torch.rand(4, 3, 32, 32)
    grads = []
    for variant in ("plain", "checkpointing", "channels-last"):
        model = copy.deepcopy(encoder)
        x = images
        if variant == "checkpointing":
            enable_grad_checkpointing(model, "tiny")
        if variant == "channels-last":
            model.to(memory_format=torch.channels_last)
            x = images.contiguous(memory_format=torch.channels_last)
        model(x).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g_plain, g_ckpt, g_cl in zip(*grads):
        assert torch.equal(g_plain, g_ckpt)
        assert torch.allclose(g_plain, g_cl, rtol=1e-4, atol=1e-6)
    from lore.models.digits import small_digits_encoder

    with pytest.raises(ValueError, match="has no activation checkpointing"):
        enable_grad_checkpointing(small_digits_encoder(embed_dim=8, width=4), "digits-cnn")
