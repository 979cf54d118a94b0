"""lore: robust fine-tuning of vision encoders (LORE, FARE, TeCoA and variants) on `constrained`.

    from lore import lore, fare, naive, tecoa, tecoa_l2, tecoa_kl, RobustStep, FrozenReference, pgd

Public names are imported lazily (PEP 562): `import lore` costs nothing until a name is used.
"""

from __future__ import annotations

from ._lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
