"""lore: robust fine-tuning of vision encoders (LORE, FARE, TeCoA and variants) on `constrained`.

    from lore import lore, fare, naive, tecoa, tecoa_l2, tecoa_kl, RobustStep, FrozenReference, pgd

Public names are imported on first use (PEP 562 `__getattr__`, with plain import statements): `import lore`
costs nothing until a name is used, and the CLI's help and argument errors need no torch.
"""

from __future__ import annotations

from .plugins import lazy_exports

#: every public name and the module that defines it, imported on first use (`lore.plugins.lazy_exports`)
EXPORTS = {
    "pgd": "lore.attacks.projected_gradient:pgd",
    "Digits": "lore.data.digits:Digits",
    "load_digits_images": "lore.data.digits:load_digits_images",
    "SmallConvNet": "lore.models.digits:SmallConvNet",
    "pretrain_classifier": "lore.models.digits:pretrain_classifier",
    "small_digits_encoder": "lore.models.digits:small_digits_encoder",
    "ImageEncoder": "lore.models.encoders:ImageEncoder",
    "OpenClipModel": "lore.models.encoders:OpenClipModel",
    "load_open_clip": "lore.models.encoders:load_open_clip",
    "load_state_file": "lore.models.encoders:load_state_file",
    "load_timm": "lore.models.encoders:load_timm",
    "export_encoder": "lore.models.export:export_encoder",
    "load_exported": "lore.models.export:load_exported",
    "ZeroShotHead": "lore.heads:ZeroShotHead",
    "class_text_embeddings": "lore.heads:class_text_embeddings",
    "DualPreset": "lore.presets:DualPreset",
    "DUAL_PRESETS": "lore.presets:DUAL_PRESETS",
    "DualSettings": "lore.presets:DualSettings",
    "FrozenReference": "lore.reference:FrozenReference",
    "format_eps": "lore.units:format_eps",
    "parse_eps": "lore.units:parse_eps",
    "RobustStep": "lore.step:RobustStep",
    "METHODS": "lore.registry:METHODS",
    "register_method": "lore.registry:register_method",
    "MethodEntry": "lore.registry:MethodEntry",
    "Batch": "lore.objectives:Batch",
    "embedding": "lore.objectives:embedding",
    "embedding_distance": "lore.objectives:embedding_distance",
    "zero_shot_cross_entropy": "lore.objectives:zero_shot_cross_entropy",
    "zero_shot_logits": "lore.objectives:zero_shot_logits",
    "DualAscent": "lore.dual:DualAscent",
    "dual_factory": "lore.dual:dual_factory",
    "Method": "lore.methods:Method",
    "fare": "lore.methods:fare",
    "lore": "lore.methods:lore",
    "naive": "lore.methods:naive",
    "tecoa": "lore.methods:tecoa",
    "tecoa_kl": "lore.methods:tecoa_kl",
    "tecoa_l2": "lore.methods:tecoa_l2",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), EXPORTS)
