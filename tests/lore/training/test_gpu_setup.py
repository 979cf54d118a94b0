"""The engine's set-up for GPUs, checked here: unreachable parameters frozen, buffers broadcast only where they
change, phi_0's snapshot in the training memory format, pinned prefetch bounded in bytes, uint8 batches."""

from __future__ import annotations

import pytest
import torch

from lore.data.images import as_float_pixels
from lore.training.placement import freeze_unreachable, has_running_statistics
from lore.training.loader import prefetch_batches


class WithMaskToken(torch.nn.Module):
    """Like transformers' Dinov2Model: a mask token only masked-image pretraining uses."""

    def __init__(self) -> None:
        super().__init__()
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 4))
        self.proj = torch.nn.Linear(3 * 4 * 4, 4)

    def forward(self, images, mask=None):
        out = self.proj(images.flatten(1))
        return out if mask is None else torch.where(mask[:, None], self.mask_token, out)


def test_parameters_no_image_reaches_are_frozen_and_the_rest_train():
    model = WithMaskToken().train()
    assert freeze_unreachable(model, 4, torch.device("cpu")) == ["mask_token"]
    assert not model.mask_token.requires_grad and model.proj.weight.requires_grad and model.training
    assert all(p.grad is None for p in model.parameters())  # the probe pass left no gradient behind
    assert freeze_unreachable(model, 4, torch.device("cpu")) == []  # idempotent


def test_a_real_dinov2_has_its_mask_token_frozen(tmp_path):
    from hf_checkpoints import dinov2_folder
    from lore.models.build import build_model

    built = build_model(f"hf:{dinov2_folder(tmp_path / 'd')}", None, None, cache_dir=tmp_path, seed=0,
                        device=torch.device("cpu"))
    assert freeze_unreachable(built.encoder, built.image_size, torch.device("cpu")) == [
        "backbone.vision_model.embeddings.mask_token"]


def test_buffers_are_broadcast_only_where_training_changes_them():
    vit_like = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8))
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    frozen_statistics = torch.nn.Sequential(torch.nn.BatchNorm2d(8, track_running_stats=False))
    assert not has_running_statistics(vit_like) and has_running_statistics(cnn)
    assert not has_running_statistics(frozen_statistics)


def test_prefetch_is_bounded_in_bytes_with_at_least_one_batch_per_worker():
    batch = 448 * 3 * 224 * 224  # uint8: 67 MB
    assert prefetch_batches(batch, 8, 2 * 2 ** 30) == 3  # 8 workers x 3 batches = 1.6 GB <= 2 GiB
    assert prefetch_batches(batch, 16, 2 * 2 ** 30) == 1  # the floor: one each
    assert prefetch_batches(batch, 16, 2 * 2 ** 30) * 16 * batch < 1.1e9  # vs 16 x 4 float32 batches: 17 GB before
    with pytest.raises(ValueError, match="workers >= 1"):
        prefetch_batches(batch, 0, 2 ** 30)


def test_uint8_batches_become_the_floats_totensor_made():
    from torchvision.transforms.functional import pil_to_tensor, to_tensor
    from PIL import Image

    pixels = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    image = Image.fromarray(pixels.numpy())
    assert torch.equal(as_float_pixels(pil_to_tensor(image)), to_tensor(image))
    floats = torch.rand(3, 2, 2)
    assert as_float_pixels(floats) is floats


def test_the_reference_snapshot_is_taken_in_the_channels_last_layout(tmp_path, lore_cache):
    from lore.training.config import TrainConfig
    from lore.training.distributed import DistInfo
    from lore.training.assembly import build_run

    config = TrainConfig(output=str(tmp_path / "run"), cache_dir=str(lore_cache), max_steps=1, device="cpu",
                         channels_last=True, batch_size=16)
    run = build_run(config, False, DistInfo())
    convs = [name for name, t in run.reference._snapshot.items() if t.dim() == 4]
    assert convs and all(run.reference._snapshot[name].is_contiguous(memory_format=torch.channels_last)
                         for name in convs)


def test_a_bare_cuda_device_means_this_ranks_gpu_and_is_refused_without_one(tmp_path):
    """DDP's device_ids need an index: --device cuda becomes cuda:LOCAL_RANK; on a machine without CUDA it is
    refused by name."""
    from lore.training.config import TrainConfig
    from lore.training.distributed import DistInfo
    from lore.training.placement import training_device

    assert training_device("cpu", DistInfo()) == torch.device("cpu")
    if torch.cuda.is_available():
        assert training_device("cuda", DistInfo(rank=1, world_size=2, local_rank=1)) == torch.device("cuda:1")
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            training_device("cuda", DistInfo())
        assert training_device(TrainConfig().device, DistInfo()) == torch.device("cpu")


def test_eager_checks_stop_before_the_update_naming_the_batch(tmp_path, lore_cache):
    """--eager-checks raises where the check is made; the engine still names the batch and what to restart from."""
    from lore.training.config import TrainConfig
    from lore.training.engine import train

    config = TrainConfig(output=str(tmp_path / "run"), cache_dir=str(lore_cache), max_steps=6, device="cpu",
                         batch_size=16, pgd_steps=2, primal_steps=1, lr=1e20, dual_hidden=32, probe_every=0,
                         eager_checks=True)
    with pytest.raises(FloatingPointError, match=r"training stopped at batch \d: the Lagrangian is nan; stopping "
                                                 r"before the update\. No checkpoint was written yet"):
        train(config)
