"""Builds the encoder (and its text tower, when there is one) that a run fine-tunes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..data.digits import load_digits_images
from ..data.zero_shot import prompt_templates
from ..heads import ZeroShotHead, class_text_embeddings
from ..plugins import resolve
from .digits import pretrain_classifier, small_digits_encoder
from .families import family_for
from .encoders import ImageEncoder, load_open_clip, load_state_file, load_timm, save_state_file
from .hf import HFModel, load_hf

DIGITS_MODEL = "digits-cnn"
DIGITS_CLIP = "digits-clip"


@dataclass
class BuiltModel:
    """The encoder to train, plus what zero-shot heads and export need.

    Attributes:
        encoder: trainable `ImageEncoder`, pixels in [0, 1] -> [B, D].
        image_size: side of the square input.
        clip: the text tower's owner (anything with `encode_text`: the full open_clip model, the digits CLIP, a
            `transformers` CLIP/SigLIP's `HFTextTower`), or None.
        tokenizer: its tokenizer, or None.
        kind: "digits", "digits-clip", "open_clip", "timm", or an `lore.models.hf.ARCHITECTURES` kind ("hf-clip", ...).
        logit_scale, logit_bias: the zero-shot head's scale and bias (100 and 0; a `transformers` model's own).
        hf: the `transformers` model and its source folder (`hf:` models), for the export.
        family: the registered model family that built it (`lore.models.families`; `build_model` fills it in),
            whose exporter writes its export.
        prompts: the zero-shot prompt templates (with a "{}" slot); None: those of `kind`
            (`lore.data.zero_shot.PROMPT_TEMPLATES`).
    """

    encoder: ImageEncoder
    image_size: int
    clip: Optional[nn.Module] = None
    tokenizer: object = None
    kind: str = "digits"
    logit_scale: float = 100.0
    logit_bias: float = 0.0
    hf: Optional[HFModel] = None
    family: str = ""
    prompts: Optional[tuple[str, ...]] = None


def build_model(name: str, pretrained: Optional[str], image_size: Optional[int], *, cache_dir: Path, seed: int,
                device: torch.device, allow_missing: bool = False) -> BuiltModel:
    """Builds the starting encoder phi_0 with the model family that claims `name` (`lore.models.families`).

    Args:
        name: "digits-clip" (the embedded CLIP-style default), "digits-cnn", an open_clip name,
            "local-dir:PATH", "timm:NAME", "hf:PATH" (a local `transformers` folder, `lore.models.hf`), or a name
            a registered family claims.
        pretrained: open_clip tag or weights file; for timm a local weights file; for digits-clip "shipped"
            (default: the packaged weights) or "retrained" (built on this machine, cached).
        image_size: input side (default: the model's own).
        cache_dir: where the digits reference encoder is cached (built once, deterministically).
        seed: seed of the digits pretraining.
        device: where the encoder goes.
        allow_missing: `hf:` models: accept weights that lack entries the config names (`load_hf`).

    Raises:
        ValueError: a family's builder that does not return a `BuiltModel`.
    """
    family = family_for(name)
    builder = resolve(family.build, f"the builder of model family {family.name!r}")
    built = builder(name, pretrained, image_size, cache_dir=cache_dir, seed=seed, device=device,
                    allow_missing=allow_missing)
    if not isinstance(built, BuiltModel):
        raise ValueError(f"the builder of model family {family.name!r} returned {type(built).__name__} for "
                         f"{name!r}, not a lore.models.BuiltModel")
    return built if built.family else replace(built, family=family.name)


def build_digits_clip(name: str, pretrained: Optional[str], image_size: Optional[int], *, cache_dir: Path,
                      seed: int, device: torch.device, allow_missing: bool = False) -> BuiltModel:
    """The embedded CLIP-style digits model (family "digits-clip"), pretrained on train + validation only."""
    from .digits_clip import digits_tokenizer, load_or_train_digits_clip

    size = image_size or 16
    pretraining = load_digits_images(size).splits(seed).pretraining()  # never the test digits
    clip = load_or_train_digits_clip(pretraining, cache_dir, seed=seed, source=pretrained).to(device)
    return BuiltModel(clip.visual, size, clip, digits_tokenizer(), kind="digits-clip")


def build_digits_cnn(name: str, pretrained: Optional[str], image_size: Optional[int], *, cache_dir: Path,
                     seed: int, device: torch.device, allow_missing: bool = False) -> BuiltModel:
    """A small CNN pretrained on the digits' train + validation parts (family "digits"), cached in `cache_dir`."""
    size = image_size or 16
    torch.manual_seed(seed)
    encoder = small_digits_encoder(embed_dim=32, width=16)
    cached = cache_dir / f"digits-cnn-w16-d32-{size}px-seed{seed}-trainval.safetensors"
    if cached.is_file():
        encoder.load_state_dict(load_state_file(cached))
    else:
        pretraining = load_digits_images(size).splits(seed).pretraining()  # never the test digits
        pretrain_classifier(encoder, pretraining, steps=200, seed=seed)
        save_state_file(encoder.state_dict(), cached)
    return BuiltModel(encoder.to(device), size, kind="digits")


def build_hf(name: str, pretrained: Optional[str], image_size: Optional[int], *, cache_dir: Path, seed: int,
             device: torch.device, allow_missing: bool = False) -> BuiltModel:
    """A local `transformers` folder, "hf:PATH" (family "hf")."""
    if pretrained:
        raise ValueError(f"pretrained={pretrained!r} is ignored for {name!r}; an hf: folder carries its weights")
    model = load_hf(name, image_size=image_size, device=device, allow_missing=allow_missing)
    return BuiltModel(model.encoder, model.image_size, model.text, model.tokenizer, kind=model.kind,
                      logit_scale=model.logit_scale, logit_bias=model.logit_bias, hf=model)


def build_timm(name: str, pretrained: Optional[str], image_size: Optional[int], *, cache_dir: Path, seed: int,
               device: torch.device, allow_missing: bool = False) -> BuiltModel:
    """A timm image model, "timm:NAME" (family "timm"), from a local weights file when `pretrained` names one."""
    encoder = load_timm(name[len("timm:"):], checkpoint=pretrained, image_size=image_size, device=device)
    size = image_size or encoder.backbone.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    return BuiltModel(encoder, size, kind="timm")


def build_open_clip(name: str, pretrained: Optional[str], image_size: Optional[int], *, cache_dir: Path,
                    seed: int, device: torch.device, allow_missing: bool = False) -> BuiltModel:
    """An open_clip model by architecture name (+ `pretrained`) or "local-dir:PATH" (family "open_clip")."""
    model = load_open_clip(name, pretrained, image_size=image_size, device=device)
    return BuiltModel(model.encoder, image_size or model.image_size[0], model.clip, model.tokenizer, kind="open_clip")


def class_embeddings(built: BuiltModel, classnames) -> torch.Tensor:
    """[C, D] unit text embeddings of `classnames` through the model's text tower, averaged over the
    prompt templates of its kind (`lore.data.zero_shot.PROMPT_TEMPLATES`)."""
    if built.clip is None:
        raise ValueError(f"a {built.kind} model has no text tower: zero-shot class embeddings need a CLIP model")
    templates = list(built.prompts) if built.prompts else prompt_templates(built.kind)
    return class_text_embeddings(built.clip, built.tokenizer, list(classnames), templates)


def zero_shot_head(built: BuiltModel, class_embeddings: torch.Tensor) -> ZeroShotHead:
    """The zero-shot head of `built` over [C, D] class embeddings: its own logit scale and bias."""
    return ZeroShotHead(class_embeddings, scale=built.logit_scale, bias=built.logit_bias)


def build_head(built: BuiltModel, classnames: Optional[tuple[str, ...]], reference, images: torch.Tensor,
               labels: torch.Tensor) -> ZeroShotHead:
    """A classification head for probes and supervised methods.

    With a text tower and class names: CLIP's zero-shot head (the prompt templates of its kind).
    Otherwise: class prototypes, the mean reference embedding phi_0 of each class
    over the given (training) images, read through cosine similarity.
    """
    if built.clip is not None and classnames:
        return zero_shot_head(built, class_embeddings(built, classnames))
    with torch.no_grad():
        embeddings = reference(images)
    num_classes = int(labels.max()) + 1
    if len(set(labels.tolist())) < 2:
        raise ValueError("a prototype head needs images of at least two classes")
    prototypes = torch.zeros(num_classes, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    for c in range(num_classes):  # a class absent from the sample keeps a zero prototype (cosine 0)
        if (labels == c).any():
            prototypes[c] = embeddings[labels == c].mean(0)
    return ZeroShotHead(prototypes, scale=20.0)
