"""Encoders and what builds, loads and exports them: open_clip and timm towers behind one `ImageEncoder`,
the embedded digits models, `build_model` (the starting phi_0 of a run), and export back to open_clip/timm.
"""

from __future__ import annotations

from .build import DIGITS_CLIP, DIGITS_MODEL, BuiltModel, build_head, build_model, class_embeddings
from .digits import SmallConvNet, pretrain_classifier, small_digits_encoder
from .digits_clip import DigitsCLIP, digits_tokenizer, load_or_train_digits_clip
from .encoders import ImageEncoder, OpenClipModel, load_open_clip, load_state_file, load_timm, save_state_file
from .export import export_encoder, load_exported

__all__ = [
    "BuiltModel", "DIGITS_CLIP", "DIGITS_MODEL", "DigitsCLIP", "ImageEncoder", "OpenClipModel", "SmallConvNet",
    "build_head", "build_model", "class_embeddings", "digits_tokenizer", "export_encoder", "load_exported",
    "load_open_clip", "load_or_train_digits_clip", "load_state_file", "load_timm", "pretrain_classifier",
    "save_state_file", "small_digits_encoder",
]
