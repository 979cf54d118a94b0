"""Prints docs/training.md's disk table: last.pt and the export of a LORE run, per Table 6 architecture.

Each model is built with random weights (nothing is downloaded; the sizes depend on the shapes, not the
values) and measured with `lore.training.disk.predict`, the prediction `lore train` prints when it starts;
tests/lore/training/test_engine.py checks that prediction against the files a run writes.

    python tools/disk_sizes.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from constrained import MultiplierNetwork
from lore.models.build import build_model
from lore.models.export import exported_weights
from lore.training.disk import format_bytes, predict

#: (row label, lore --model)
MODELS = (
    ("CLIP ViT-B/32", "ViT-B-32"),
    ("CLIP ViT-B/16", "ViT-B-16"),
    ("CLIP ConvNeXt-B", "convnext_base"),
    ("CLIP ViT-L/14 (LLaVA-1.5's tower family)", "ViT-L-14"),
    ("DINOv2 ViT-S/14", "timm:vit_small_patch14_dinov2"),
    ("DINOv2 ViT-B/14", "timm:vit_base_patch14_dinov2"),
)


def row(label: str, name: str) -> str:
    with tempfile.TemporaryDirectory() as cache:
        pretrained = None if name.startswith("timm:") else ""  # random weights either way
        built = build_model(name, pretrained, None, cache_dir=Path(cache), seed=0, device=torch.device("cpu"))
    width = built.encoder.embed_dim
    if width is None:  # open_clip's timm towers (ConvNeXt) do not name it: one forward does
        with torch.no_grad():
            width = built.encoder.eval()(torch.zeros(1, 3, built.image_size, built.image_size)).shape[-1]
    dual = MultiplierNetwork(width, hidden=512).state_dict()  # the paper's dual; its plain SGD keeps no state
    exported = exported_weights(built)
    full = predict(built.encoder, exported, dual, save_optimizer_state=True)
    lean = predict(built.encoder, exported, dual, save_optimizer_state=False)
    return (f"| {label} | `{name}` | {format_bytes(full.checkpoint)} | {format_bytes(lean.checkpoint)} | "
            f"{format_bytes(full.export)} |")


def main() -> None:
    print("| model | `--model` | last.pt | last.pt, `--no-save-optimizer-state` | export |")
    print("|---|---|---|---|---|")
    for label, name in MODELS:
        print(row(label, name), flush=True)


if __name__ == "__main__":
    main()
