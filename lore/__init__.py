"""lore: robust fine-tuning of vision encoders (LORE, FARE, TeCoA and variants) on `constrained`.

    from lore import lore, fare, naive, tecoa, tecoa_l2, tecoa_kl, RobustStep, FrozenReference, pgd
"""

from .attacks import pgd
from .digits import Digits, SmallConvNet, load_digits_images, pretrain_classifier, small_digits_encoder
from .encoders import ImageEncoder, OpenClipModel, load_open_clip, load_state_file, load_timm
from .heads import ZeroShotHead, class_text_embeddings
from .methods import (
    METHODS,
    Batch,
    Method,
    dual_factory,
    embedding,
    embedding_distance,
    fare,
    lore,
    naive,
    tecoa,
    tecoa_kl,
    tecoa_l2,
    zero_shot_cross_entropy,
    zero_shot_logits,
)
from .reference import FrozenReference
from .step import RobustStep

__all__ = [
    "METHODS",
    "Batch",
    "Digits",
    "FrozenReference",
    "ImageEncoder",
    "Method",
    "OpenClipModel",
    "RobustStep",
    "SmallConvNet",
    "ZeroShotHead",
    "class_text_embeddings",
    "dual_factory",
    "embedding",
    "embedding_distance",
    "fare",
    "load_digits_images",
    "load_open_clip",
    "load_state_file",
    "load_timm",
    "lore",
    "naive",
    "pgd",
    "pretrain_classifier",
    "small_digits_encoder",
    "tecoa",
    "tecoa_kl",
    "tecoa_l2",
    "zero_shot_cross_entropy",
    "zero_shot_logits",
]
