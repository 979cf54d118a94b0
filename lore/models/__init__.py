"""Encoders and what builds, loads and exports them: open_clip and timm towers behind one `ImageEncoder`,
the embedded digits models, `build_model` (the starting phi_0 of a run), and export back to open_clip/timm.

Public names are imported lazily (PEP 562).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_HOMES = {
    "DIGITS_CLIP": ".build",
    "DIGITS_MODEL": ".build",
    "BuiltModel": ".build",
    "build_head": ".build",
    "build_model": ".build",
    "class_embeddings": ".build",
    "ImageEncoder": ".encoders",
    "OpenClipModel": ".encoders",
    "load_open_clip": ".encoders",
    "load_state_file": ".encoders",
    "load_timm": ".encoders",
    "save_state_file": ".encoders",
    "export_encoder": ".export",
    "load_exported": ".export",
    "SmallConvNet": ".digits",
    "pretrain_classifier": ".digits",
    "small_digits_encoder": ".digits",
    "DigitsCLIP": ".digits_clip",
    "digits_tokenizer": ".digits_clip",
    "load_or_train_digits_clip": ".digits_clip",
}

__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
