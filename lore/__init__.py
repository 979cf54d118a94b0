"""lore: robust fine-tuning of vision encoders (LORE, FARE, TeCoA and variants) on `constrained`.

    from lore import lore, fare, naive, tecoa, tecoa_l2, tecoa_kl, RobustStep, FrozenReference, pgd

Public names are imported lazily (PEP 562): `import lore` costs nothing until a name is used.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "pgd": ".attacks",
    "Digits": ".digits",
    "SmallConvNet": ".digits",
    "load_digits_images": ".digits",
    "pretrain_classifier": ".digits",
    "small_digits_encoder": ".digits",
    "ImageEncoder": ".encoders",
    "OpenClipModel": ".encoders",
    "load_open_clip": ".encoders",
    "load_state_file": ".encoders",
    "load_timm": ".encoders",
    "ZeroShotHead": ".heads",
    "class_text_embeddings": ".heads",
    "METHODS": ".methods",
    "Batch": ".methods",
    "Method": ".methods",
    "dual_factory": ".methods",
    "embedding": ".methods",
    "embedding_distance": ".methods",
    "fare": ".methods",
    "lore": ".methods",
    "naive": ".methods",
    "tecoa": ".methods",
    "tecoa_kl": ".methods",
    "tecoa_l2": ".methods",
    "zero_shot_cross_entropy": ".methods",
    "zero_shot_logits": ".methods",
    "FrozenReference": ".reference",
    "RobustStep": ".step",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """Imports a public name on first use, so that light entry points (`lore --help`) never import torch."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
