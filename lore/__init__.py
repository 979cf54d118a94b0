"""lore: robust fine-tuning of vision encoders (LORE, FARE, TeCoA and variants) on `constrained`.

    from lore import lore, fare, naive, tecoa, tecoa_l2, tecoa_kl, RobustStep, FrozenReference, pgd

Public names are imported on first use (PEP 562 `__getattr__`, with plain import statements): `import lore`
costs nothing until a name is used, and the CLI's help and argument errors need no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Batch", "DUAL_PRESETS", "Digits", "DualAscent", "DualPreset", "FrozenReference", "ImageEncoder", "METHODS",
    "Method", "MethodEntry", "OpenClipModel", "RobustStep", "SmallConvNet", "ZeroShotHead", "class_text_embeddings", "dual_factory",
    "embedding", "embedding_distance", "export_encoder", "fare", "format_eps", "load_digits_images", "load_exported",
    "load_open_clip", "load_state_file", "load_timm", "lore", "naive", "parse_eps", "pgd", "pretrain_classifier",
    "register_method", "small_digits_encoder", "tecoa", "tecoa_kl", "tecoa_l2", "zero_shot_cross_entropy", "zero_shot_logits",
]


def __getattr__(name: str) -> Any:
    if name == "pgd":
        from .attacks import projected_gradient as home
    elif name in ("Digits", "load_digits_images"):
        from .data import digits as home
    elif name in ("SmallConvNet", "pretrain_classifier", "small_digits_encoder"):
        from .models import digits as home
    elif name in ("ImageEncoder", "OpenClipModel", "load_open_clip", "load_state_file", "load_timm"):
        from .models import encoders as home
    elif name in ("export_encoder", "load_exported"):
        from .models import export as home
    elif name in ("ZeroShotHead", "class_text_embeddings"):
        from . import heads as home
    elif name in ("DualPreset", "DUAL_PRESETS"):
        from . import presets as home
    elif name == "FrozenReference":
        from . import reference as home
    elif name in ("format_eps", "parse_eps"):
        from . import units as home
    elif name == "RobustStep":
        from . import step as home
    elif name in ("METHODS", "register_method", "MethodEntry"):
        from . import registry as home
    elif name in __all__:
        from . import methods as home
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(home, name)  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
