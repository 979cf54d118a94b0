"""The registry of model families: which names each builds, and how it exports (torch-free).

`build_model(name, ...)` asks `family_for(name)` which family claims a name: one that lists the exact name, else
the one with the longest matching prefix ("timm:", "hf:", ...), else open_clip, which takes every other name (an
open_clip architecture or "local-dir:PATH"). The family's `build` makes the `BuiltModel` (the encoder, and the
text tower, tokenizer, logit scale and prompt templates its zero-shot head reads); its `export` writes what
`lore train` leaves in a run's export/.

A user's family is one `register_model_family` call, from Python or a plugin (`lore.plugins`); the built-ins
register themselves the same way. This module imports nothing of torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from ..plugins import check_new_name, load_plugins

Target = Union[str, Callable[..., Any]]

FALLBACK = "open_clip"
"""The family of every name no other family claims (open_clip's own names and "local-dir:PATH")."""


@dataclass(frozen=True)
class ModelFamily:
    """One registered model family.

    Attributes:
        name: the family's name (`BuiltModel.family`, the run's records).
        build: `(name, pretrained, image_size, *, cache_dir, seed, device, allow_missing) -> BuiltModel`, as
            `lore.models.build.build_model` documents; a callable or "module:attribute".
        prefix: the names it claims by prefix ("timm:"); "" for none.
        names: the exact names it claims ("digits-clip").
        export: `(built, model_name, folder, replace) -> folder`, writing a loadable export into `folder` (new or
            empty; replaced whole when `replace`); None: the family cannot export, and `lore train` says so.
        exported_weights: `built -> nn.Module` whose state the export writes (for the disk estimate); None: the
            encoder's backbone.
        summary: one line for help texts.
    """

    name: str
    build: Target
    prefix: str = ""
    names: tuple[str, ...] = ()
    export: Optional[Target] = None
    exported_weights: Optional[Target] = None
    summary: str = ""


_REGISTERED: dict[str, ModelFamily] = {}


def register_model_family(family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Adds `family`, so that `lore train --model` and `lore eval --model` build the names it claims.

    Raises:
        ValueError: a bad family name, a taken name (unless `replace`), a prefix that is not "word:" or that
            another family claims, an exact name another family claims, or a family that claims nothing.
    """
    check_new_name("model family", family.name, _REGISTERED, replace)
    if family.prefix and not re.fullmatch(r"[a-z][a-z0-9_-]*:", family.prefix):
        raise ValueError(f"model family {family.name!r}: a prefix is a word and a colon (e.g. 'timm:'), got "
                         f"{family.prefix!r}")
    if not (family.prefix or family.names or family.name == FALLBACK):
        raise ValueError(f"model family {family.name!r} claims no names: give a prefix or exact names")
    for other in _REGISTERED.values():
        if other.name == family.name:
            continue
        if family.prefix and family.prefix == other.prefix:
            raise ValueError(f"model family {family.name!r}: prefix {family.prefix!r} is {other.name!r}'s")
        taken = set(family.names) & set(other.names)
        if taken:
            raise ValueError(f"model family {family.name!r}: names {sorted(taken)} are {other.name!r}'s")
    _REGISTERED[family.name] = family
    return family


for _family in (
    ModelFamily("digits-clip", "lore.models.build:build_digits_clip", names=("digits-clip",),
                export="lore.models.export:export_encoder_files", exported_weights="lore.models.export:digits_clip_weights",
                summary="the embedded CLIP-style digits model (16 px, text tower), shipped weights"),
    ModelFamily("digits", "lore.models.build:build_digits_cnn", names=("digits-cnn",),
                export="lore.models.export:export_encoder_files", summary="a small CNN pretrained on the digits"),
    ModelFamily("hf", "lore.models.build:build_hf", prefix="hf:", export="lore.models.export:export_hf",
                exported_weights="lore.models.export:hf_weights",
                summary="a local `transformers` CLIP, SigLIP or DINOv2 folder (lore.models.hf)"),
    ModelFamily("timm", "lore.models.build:build_timm", prefix="timm:",
                export="lore.models.export:export_encoder_files", summary="a timm image model"),
    ModelFamily(FALLBACK, "lore.models.build:build_open_clip", prefix="local-dir:",
                export="lore.models.export:export_open_clip", exported_weights="lore.models.export:open_clip_weights",
                summary="an open_clip architecture (with --pretrained) or a local-dir: folder"),
):
    register_model_family(_family)


def family_names() -> tuple[str, ...]:
    """Every registered family's name, the built-ins first, after loading the installed plugins."""
    load_plugins()
    return tuple(_REGISTERED)


def family_named(name: str) -> ModelFamily:
    """The registered family `name`; an unknown one is refused with the known ones."""
    names = family_names()
    if name not in names:
        raise ValueError(f"unknown model family {name!r}; registered: {list(names)}")
    return _REGISTERED[name]


def family_for(model: str) -> ModelFamily:
    """The family that builds model name `model`: its exact name, else the longest matching prefix, else
    open_clip's."""
    load_plugins()
    for family in _REGISTERED.values():
        if model in family.names:
            return family
    prefixed = [f for f in _REGISTERED.values() if f.prefix and model.startswith(f.prefix)]
    if prefixed:
        return max(prefixed, key=lambda f: len(f.prefix))
    return _REGISTERED[FALLBACK]


def claims_by_name(model: str) -> bool:
    """Whether a family other than the fallback claims `model` by its exact name or prefix (so it is a model
    name, never a path), or it starts with open_clip's "local-dir:"."""
    family = family_for(model)
    return family.name != FALLBACK or model.startswith(family.prefix)
