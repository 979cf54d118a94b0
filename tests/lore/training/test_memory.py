"""lore.training.memory: the predicted peak of a step against what a real step on this CPU keeps alive."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef

import lore
from lore.models.build import build_model
from lore.step import RobustStep
from lore.training.memory import plan_memory


class SavedPeak:
    """The most bytes of saved-for-backward storages alive at once while it is active (the parameters' own
    left out): every save re-counts the storages not yet freed."""

    def __init__(self, parameters) -> None:
        self.owned = {p.untyped_storage()._cdata for p in parameters}
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in self.owned:
            self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
            self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
            self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return tensor


def _state_bytes(encoder, optimizer, step) -> int:
    tensors = [*encoder.parameters(), *encoder.buffers(), *step.reference._snapshot.values()]
    tensors += [p.grad for p in encoder.parameters() if p.grad is not None]
    tensors += [v for s in optimizer.state.values() for k, v in s.items() if k != "step"]
    if step.primal_dual is not None:
        tensors += [*step.primal_dual.multipliers.parameters()]
        tensors += [p.grad for p in step.primal_dual.multipliers.parameters() if p.grad is not None]
        tensors += [v for s in step.primal_dual.dual_optimizer.state.values() for v in s.values()
                    if isinstance(v, torch.Tensor) and v.dim() > 0]
    return sum(t.numel() * t.element_size() for t in tensors)


#: ViT-L/14's layer (width 1024, 16 heads, patch 14, 257 tokens at 224 px), 2 of its 24 layers: the per-token
#: activations of the large model at a CPU-sized cost
SMALL_VIT_L = {"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 2, "width": 1024, "patch_size": 14,
                                                "head_width": 64},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}


def _vit(name: str, folder: Path):
    if name == "ViT-B-32":
        return build_model("ViT-B-32", None, 224, cache_dir=folder, seed=0, device=torch.device("cpu")), 8
    import json

    import open_clip
    from safetensors.torch import save_file

    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": SMALL_VIT_L, "preprocess_cfg": {}}))
    clip = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return build_model(f"local-dir:{folder}", None, 224, cache_dir=folder, seed=0, device=torch.device("cpu")), 4


@pytest.mark.parametrize("model, passes", [("ViT-B-32", "sequential"), ("ViT-B-32", "fused"),
                                           ("ViT-L/14, 2 layers", "sequential")])
def test_the_plan_is_within_15_percent_of_a_step_measured_here(tmp_path, model, passes):
    """ViT-B/32 (batch 8) and a scaled-down ViT-L/14 (batch 4), random weights, 224 px, fp32 (this CPU's
    precision): a LORE step's state plus its peak of saved tensors, measured with weak references to every
    saved storage, against the plan."""
    torch.manual_seed(0)
    built, batch = _vit(model, tmp_path)
    encoder = built.encoder
    plan = plan_memory(encoder, 224, batch_size=batch, passes=passes, precision="fp32", dual_hidden=512,
                       embed_dim=encoder.embed_dim)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-6)
    step = RobustStep(encoder, lore.lore(0.1), optimizer, eps=4 / 255, pgd_steps=1, primal_steps=2, passes=passes)
    images = torch.rand(batch, 3, 224, 224)
    step(images).fused_read()  # the first step allocates the moments and gradients
    saved = SavedPeak(encoder.parameters())
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
        step(images).fused_read()
    measured = _state_bytes(encoder, optimizer, step) + saved.peak
    predicted = plan.state + plan.activations
    print(f"{model}, {passes}: predicted {predicted / 2 ** 20:.1f} MiB, measured {measured / 2 ** 20:.1f} MiB; activations "
          f"{plan.activations / 2 ** 20:.1f} vs {saved.peak / 2 ** 20:.1f} MiB")
    assert abs(predicted / measured - 1) < 0.15, (predicted / 2 ** 20, measured / 2 ** 20)
    # and the activations alone, the part the plan measures with fake tensors, are within 15 % too
    assert abs(plan.activations / saved.peak - 1) < 0.15, (plan.activations / 2 ** 20, saved.peak / 2 ** 20)


def test_the_plan_counts_passes_and_micro_batches():
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16), torch.nn.GELU(),
                                  torch.nn.Linear(16, 4))
    sequential = plan_memory(encoder, 8, batch_size=32, passes="sequential", precision="fp32")
    fused = plan_memory(encoder, 8, batch_size=32, passes="fused", precision="fp32")
    accumulated = plan_memory(encoder, 8, batch_size=32, accumulation=4, passes="sequential", precision="fp32")
    assert (sequential.images_per_pass, fused.images_per_pass, accumulated.images_per_pass) == (32, 64, 8)
    # per image: the flattened input (saved by the first Linear), the hidden pre-activation (GELU), its output
    assert sequential.activations_per_image == 4 * (3 * 8 * 8 + 16 + 16)
    assert sequential.state == 5 * 4 * sum(p.numel() for p in encoder.parameters())  # weights, grads, 2 moments, phi_0
    assert fused.activations == 2 * sequential.activations


def test_lore_train_plan_prints_the_model_and_trains_nothing(tmp_path, lore_cache, capsys):
    from lore.cli import main

    out = tmp_path / "never"
    assert main(["train", "--plan", "--cache-dir", str(lore_cache), "--output", str(out), "--batch-size", "64",
                 "--grad-accumulation", "2"]) == 0
    printed = capsys.readouterr().out
    assert "batch 64 per device, 2 micro-batch(es)" in printed and "activations: 32 images x" in printed
    assert "predicted peak" in printed and " GB device (10 % kept free)" in printed and not out.exists()
