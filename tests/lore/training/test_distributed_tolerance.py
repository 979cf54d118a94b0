"""Why DDP and one process differ on a real tower, measured: float reassociation of the gradient average, which
AdamW turns into lr-sized differences on near-zero gradients while the towers stay functionally equal."""

from __future__ import annotations

import copy

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

LR = 1e-5


def _gradients(model, images, targets):
    model.zero_grad()
    (model(images) - targets).pow(2).sum(1).mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _step(model, gradients, optimizer_class):
    copy_ = copy.deepcopy(model)
    optimizer = optimizer_class(copy_.parameters(), lr=LR)
    for name, p in copy_.named_parameters():
        p.grad = gradients[name].clone()
    optimizer.step()
    return copy_


@pytest.mark.slow
def test_two_shards_equal_the_full_batch_on_vit_b32_up_to_reassociation():
    torch.manual_seed(0)
    tower = open_clip.create_model("ViT-B-32", pretrained=None).visual
    images, targets = torch.rand(4, 3, 224, 224), torch.randn(4, 512)
    full = _gradients(tower, images, targets)
    shards = [_gradients(tower, images[:2], targets[:2]), _gradients(tower, images[2:], targets[2:])]
    averaged = {name: (shards[0][name] + shards[1][name]) / 2 for name in full}  # what DDP's all-reduce computes
    relative = max(float((full[n] - averaged[n]).norm() / full[n].norm().clamp_min(1e-30)) for n in full)
    assert relative < 1e-5
    for optimizer_class, weight_bound in ((torch.optim.SGD, 1e-6), (torch.optim.AdamW, 2 * LR * 1.001)):
        a, b = _step(tower, full, optimizer_class), _step(tower, averaged, optimizer_class)
        with torch.no_grad():
            difference = max(float((pa - pb).abs().max()) for pa, pb in zip(a.parameters(), b.parameters()))
            embeddings_a, embeddings_b = a(images), b(images)
        assert difference <= weight_bound, (optimizer_class.__name__, difference)
        assert float((embeddings_a - embeddings_b).norm() / embeddings_a.norm()) < 1e-5
