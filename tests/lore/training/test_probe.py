"""The training probe runs like a training step: its batch size and its autocast precision."""

from __future__ import annotations

import pytest
import torch

from constrained import NormMargin
from lore.heads import ZeroShotHead
from lore.training.probe import probe


def setting():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16))
    reference = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16)).requires_grad_(False)
    head = ZeroShotHead(torch.randn(3, 16))
    return encoder, reference, head, torch.rand(20, 3, 8, 8), torch.randint(0, 3, (20,))


def watched(encoder):
    seen = {"batches": [], "dtypes": set()}

    def hook(module, inputs, output):
        seen["batches"].append(output.shape[0])
        seen["dtypes"].add(output.dtype)
    encoder[1].register_forward_hook(hook)
    return seen


def test_the_probe_never_runs_a_larger_batch_than_asked():
    encoder, reference, head, images, labels = setting()
    seen = watched(encoder)
    probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=2, batch_size=7)
    assert max(seen["batches"]) == 7 and seen["dtypes"] == {torch.float32}


def test_the_probe_runs_under_the_training_precision_and_reports_fp32_statistics():
    encoder, reference, head, images, labels = setting()
    full = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=2)
    seen = watched(encoder)
    bf16 = probe(encoder, reference, head, images, labels, eps=4 / 255, margin=NormMargin(0.1), pgd_steps=2,
                 autocast_dtype=torch.bfloat16)
    assert torch.bfloat16 in seen["dtypes"]
    assert bf16.keys() == full.keys()
    assert bf16["probe/clean_accuracy"] == pytest.approx(full["probe/clean_accuracy"], abs=0.1)  # 2 of 20 may flip
    assert all(isinstance(v, float) for v in bf16.values())
