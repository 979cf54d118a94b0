"""The paper's Table 6 (App. C) as data: the training setting of every LORE model it reports (torch-free).

Every row shares App. C's common settings: AdamW with weight decay 1e-4, a cosine learning-rate schedule,
PGD with 10 iterations of step eps/4 under l_inf, the dual network of `lore.presets.PAPER` (2 layers,
hidden 512, dual lr 5e-4) and K = 5. FARE models use the same epochs and learning rate as the LORE row
of the same model, dataset and eps.

`row(model, dataset, eps)` finds one; `ROWS` lists them in the paper's order. `MODELS` says which
`--model`/`--pretrained` pair of `lore train` each of the paper's model names is.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

COMMON = MappingProxyType({"weight_decay": 1e-4, "pgd_steps": 10, "primal_steps": 5, "dual_lr": 5e-4,
                           "dual_hidden": 512})
"""App. C's settings shared by every row (the dual's other values: `lore.presets.PAPER`)."""

MODELS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "CLIP ViT-B/32": ("ViT-B-32", "openai"),
    "CLIP ViT-B/16": ("ViT-B-16", "openai"),
    "CLIP ViT-B/32-LAION": ("ViT-B-32", "laion2b_s34b_b79k"),
    "CLIP ConvNeXt-B": ("convnext_base", "laion400m_s13b_b51k"),
    "DINOv2 ViT-S/14": ("timm:vit_small_patch14_dinov2", ""),  # weights: a local file (no hub here)
    "DINOv2 ViT-B/14": ("timm:vit_base_patch14_dinov2", ""),
})
"""The paper's model name -> (`--model`, `--pretrained`); an empty tag means a local weights file."""

DATASETS: tuple[str, ...] = ("ImageNet", "ImageNet-100", "CIFAR10")


@dataclass(frozen=True)
class Row:
    """One row of Table 6.

    Attributes:
        eps: the training radius in 1/255 units (LORE^eps; eps 2 is 2/255).
        model: the paper's model name (a key of `MODELS`).
        dataset: "ImageNet", "ImageNet-100" or "CIFAR10".
        epochs: training epochs.
        batch_size: images per device per batch.
        lr: the encoder's AdamW learning rate.
        rho: the margin scale.
    """

    eps: int
    model: str
    dataset: str
    epochs: int
    batch_size: int
    lr: float
    rho: float


def _rows() -> tuple[Row, ...]:
    b32, b16, laion, convnext = "CLIP ViT-B/32", "CLIP ViT-B/16", "CLIP ViT-B/32-LAION", "CLIP ConvNeXt-B"
    dino_s, dino_b = "DINOv2 ViT-S/14", "DINOv2 ViT-B/14"
    table = {
        1: [(b32, "ImageNet", 2, 448, 0.1), (b32, "ImageNet-100", 5, 448, 0.1), (b32, "CIFAR10", 5, 448, 0.01)],
        2: [(b16, "ImageNet-100", 5, 128, 0.1), (laion, "ImageNet-100", 5, 448, 0.15),
            (convnext, "ImageNet-100", 5, 64, 0.15), (b32, "ImageNet", 2, 448, 0.1), (b32, "ImageNet-100", 5, 448, 0.1),
            (b32, "CIFAR10", 5, 448, 0.01)],
        4: [(b16, "ImageNet-100", 5, 128, 0.2), (laion, "ImageNet-100", 5, 448, 0.15),
            (convnext, "ImageNet-100", 5, 64, 0.15), (dino_s, "ImageNet", 2, 128, 0.05), (dino_b, "ImageNet", 1, 64, 0.1),
            (b32, "ImageNet", 3, 448, 0.1), (b32, "ImageNet-100", 5, 448, 0.1), (b32, "CIFAR10", 5, 448, 0.01)],
        6: [(b32, "ImageNet", 3, 448, 0.2), (b32, "ImageNet-100", 5, 448, 0.1)],
        8: [(b16, "ImageNet-100", 5, 128, 0.2), (laion, "ImageNet-100", 5, 448, 0.15),
            (convnext, "ImageNet-100", 5, 64, 0.15), (dino_s, "ImageNet", 2, 128, 0.05), (dino_b, "ImageNet", 1, 64, 0.1),
            (b32, "ImageNet", 3, 448, 0.2), (b32, "ImageNet-100", 5, 448, 0.1)],
        10: [(b32, "ImageNet", 3, 448, 0.2), (b32, "ImageNet-100", 5, 448, 0.1)],
        16: [(dino_s, "ImageNet", 2, 128, 0.05), (dino_b, "ImageNet", 1, 64, 0.1)],
    }
    return tuple(Row(eps, model, data, epochs, batch, 1e-5, rho)
                 for eps, rows in table.items() for model, data, epochs, batch, rho in rows)


ROWS: tuple[Row, ...] = _rows()
"""Every row of Table 6, grouped by eps as the paper prints them."""


def row(model: str, dataset: str, eps: int) -> Row:
    """The row of `model` (a key of `MODELS`) on `dataset` at LORE^`eps`; a missing one is refused, naming
    what Table 6 has for that model."""
    for candidate in ROWS:
        if (candidate.model, candidate.dataset, candidate.eps) == (model, dataset, eps):
            return candidate
    known = sorted({(r.dataset, r.eps) for r in ROWS if r.model == model})
    raise ValueError(f"Table 6 has no row for {model!r} on {dataset!r} at eps {eps}; it has {known or 'no such model'}")
