"""lore: robust fine-tuning of vision encoders (LORE, FARE, TeCoA and variants) on `constrained`.

    from lore import lore, fare, naive, tecoa, tecoa_l2, tecoa_kl, RobustStep, FrozenReference, pgd

Public names are imported lazily (PEP 562): `import lore` costs nothing until a name is used.
"""

from __future__ import annotations

from . import _moved
from ._lazy import lazy_exports

_HOMES = {
    "pgd": ".attacks.projected_gradient",
    "Digits": ".data.digits",
    "SmallConvNet": ".models.digits",
    "load_digits_images": ".data.digits",
    "pretrain_classifier": ".models.digits",
    "small_digits_encoder": ".models.digits",
    "ImageEncoder": ".models.encoders",
    "OpenClipModel": ".models.encoders",
    "load_open_clip": ".models.encoders",
    "load_state_file": ".models.encoders",
    "load_timm": ".models.encoders",
    "export_encoder": ".models.export",
    "load_exported": ".models.export",
    "ZeroShotHead": ".heads",
    "class_text_embeddings": ".heads",
    "METHODS": ".methods",
    "Batch": ".methods",
    "Method": ".methods",
    "DualAscent": ".methods",
    "DualPreset": ".presets",
    "DUAL_PRESETS": ".presets",
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
    "format_eps": ".units",
    "parse_eps": ".units",
    "RobustStep": ".step",
}

__all__ = sorted(_HOMES)
_moved.install()  # old module paths (lore.encoders, lore.training.data, ...) keep importing, with a warning
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
