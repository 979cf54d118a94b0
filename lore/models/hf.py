"""Hugging Face `transformers` checkpoints as lore models: `--model hf:PATH`, and exports `transformers` loads.

A local folder written by `save_pretrained` (config.json, model.safetensors, preprocessor_config.json and, for
the models with a text tower, the tokenizer files) is built by `transformers` itself, from the class its
config names. Nothing is downloaded. Supported (`ARCHITECTURES`):

- `CLIPModel`, `SiglipModel`: the image tower is fine-tuned, the text tower gives zero-shot heads (CLIP's
  logit scale, SigLIP's scale and bias);
- `CLIPVisionModelWithProjection`, `SiglipVisionModel`, `Dinov2Model`: the image tower alone (evaluated with a
  linear probe, as DINOv2 in the paper).

The encoder returns what the class's own forward calls the image embedding: `image_embeds` (the projected
pooled output) for CLIP, `pooler_output` for SigLIP and DINOv2. Pixels stay in [0, 1] at the boundary; the
processor's mean and std are applied inside `ImageEncoder`. With `--image-size` other than the checkpoint's,
CLIP's and SigLIP's position embeddings are resampled once (the same bicubic rule as their
`interpolate_pos_encoding`) and the config records the new size, so the export loads at that size; DINOv2
resamples at every forward by itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..files import staged_folder
from ..jsonio import write_json
from ..validation import read_json_object
from .encoders import ImageEncoder, check_patch_multiple
from .hf_folder import (ARCHITECTURES, TOKENIZER_FILES, check_architecture, folder_of, is_hf_folder,
                        processor_size, read_processor, with_size)

#: weight entries a checkpoint need not hold (buffers `transformers` rebuilds)
REBUILT = ("position_ids",)


@dataclass
class HFModel:
    """A `transformers` checkpoint split the way LORE uses it.

    Attributes:
        encoder: the trainable image tower, pixels in [0, 1] -> [B, D] (its modules are the model's own, so
            saving `model` saves the fine-tuned tower).
        model: the whole `transformers` model.
        text: the text tower for zero-shot heads (`HFTextTower`), or None.
        tokenizer: `HFTokenizer` for the text tower, or None.
        image_size: the square input side.
        kind: `ARCHITECTURES`' lore kind.
        logit_scale, logit_bias: the zero-shot logits' scale exp(t) and bias (0 for CLIP).
        source: the folder the checkpoint came from.
        processor: the image processor's settings as read (mean and std checked, three channels).
        missing: weight entries the folder did not hold, initialised at random (only with allow_missing).
    """

    encoder: ImageEncoder
    model: nn.Module
    text: Optional["HFTextTower"]
    tokenizer: Optional["HFTokenizer"]
    image_size: int
    kind: str
    logit_scale: float
    logit_bias: float
    source: Path
    processor: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)


class HFImageTower(nn.Module):
    """Normalised pixels [B, 3, H, W] -> the class's image embedding [B, D]."""

    def __init__(self, vision_model: nn.Module, projection: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.projection = projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return pooled if self.projection is None else self.projection(pooled)


class HFTextTower(nn.Module):
    """`encode_text(tokens) -> [N, D]`: the text embedding of CLIPModel / SiglipModel (`get_text_features`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def encode_text(self, tokens) -> torch.Tensor:
        out = self.model.get_text_features(**tokens)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


class HFTokenizer:
    """texts -> the `transformers` tokenizer's tensors, padded the way the model was trained: CLIP to the longest
    prompt with an attention mask, SigLIP to its fixed length without one (as its model card prescribes)."""

    def __init__(self, tokenizer, *, max_length: int, fixed_length: bool) -> None:
        self.tokenizer, self.max_length, self.fixed_length = tokenizer, max_length, fixed_length

    def __call__(self, texts: list[str]):
        padding = "max_length" if self.fixed_length else True
        tokens = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        if self.fixed_length:
            tokens.pop("attention_mask", None)
        return tokens


def load_hf(name: str, *, image_size: Optional[int] = None, device: Union[str, torch.device] = "cpu",
            allow_missing: bool = False) -> HFModel:
    """Builds an `hf:PATH` model with `transformers` (the `hf` extra).

    Args:
        name: "hf:" and a local folder written by `save_pretrained`.
        image_size: the input side (default: the processor's crop size, else the model's).
        device: where the model goes.
        allow_missing: train even when the weights lack entries the config names (they start random, and are
            listed in a warning); without it such a folder is refused.

    Raises:
        FileNotFoundError: a missing folder or file. ValueError: bad JSON or processor settings, an architecture
        lore does not support or that its config contradicts, weights transformers cannot load or that miss
        entries, a text tower without a working tokenizer, or an image size that is not a multiple of the patch
        size; each names the file and the field.
    """
    try:
        import transformers
    except ImportError:
        raise ImportError("hf: models need transformers: pip install 'lore-constrained[hf]'") from None
    folder = folder_of(name)
    what = f"model {name!r}"
    config = read_json_object(folder / "config.json", f"{what}:", holds="")
    kind, has_text = check_architecture(config, folder, what)
    processor = read_processor(folder, what)
    if has_text and not any((folder / file).is_file() for file in TOKENIZER_FILES):
        raise FileNotFoundError(f"{what}: {folder} has a text tower but no tokenizer ({' or '.join(TOKENIZER_FILES)}); "
                                "save the tokenizer with save_pretrained (or the processor, which holds it)")
    model, missing = _from_pretrained(getattr(transformers, config["architectures"][0]), folder, what, allow_missing)
    model = model.float().to(device).eval()
    size = image_size or processor_size(processor) or _vision_config(model).image_size
    vision_model = model.vision_model if hasattr(model, "vision_model") else model
    check_patch_multiple(size, _vision_config(model).patch_size, name)
    if kind != "hf-dinov2" and size != _vision_config(model).image_size:
        resize_position_embeddings(vision_model.embeddings, size)
        _vision_config(model).image_size = size
    projection = getattr(model, "visual_projection", None)
    tower = HFImageTower(vision_model, projection)
    width = projection.out_features if projection is not None else _vision_config(model).hidden_size
    encoder = ImageEncoder(tower, processor["image_mean"], processor["image_std"], embed_dim=width).to(device)
    text, tokenizer = (HFTextTower(model), _tokenizer(transformers, model, folder, kind, what)) if has_text else (None, None)
    with torch.no_grad():
        scale = float(model.logit_scale.exp()) if hasattr(model, "logit_scale") else 100.0
        bias = float(model.logit_bias) if hasattr(model, "logit_bias") else 0.0
    return HFModel(encoder, model, text, tokenizer, size, kind, scale, bias, folder, processor, missing)


def _tokenizer(transformers, model: nn.Module, folder: Path, kind: str, what: str) -> "HFTokenizer":
    """The text tower's tokenizer from `folder`, checked to tell prompts apart (SigLIP's pads to a fixed length)."""
    try:
        loaded = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # a broken tokenizer file: transformers' own words, on one line
        raise ValueError(f"{what}: its tokenizer cannot be loaded from {folder}: {_first_line(error)}") from None
    tokenizer = HFTokenizer(loaded, max_length=model.config.text_config.max_position_embeddings,
                            fixed_length=kind == "hf-siglip")
    check_tokenizer_tells_apart(tokenizer, what)
    return tokenizer


def _from_pretrained(model_class, folder: Path, what: str, allow_missing: bool):
    """(model, missing entries): `from_pretrained` with its loading report read, and its failures on one line."""
    try:
        model, info = model_class.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except Exception as error:  # a pickle refused, a size mismatch, a config transformers rejects: one line
        raise ValueError(f"{what}: transformers cannot load {folder}: {_first_line(error)}") from None
    missing = [key for key in info.get("missing_keys", ()) if not key.endswith(REBUILT)]
    mismatched = [str(entry[0]) if isinstance(entry, tuple) else str(entry) for entry in info.get("mismatched_keys", ())]
    if mismatched:
        raise ValueError(f"{what}: {len(mismatched)} weight entries of {folder} do not have the shape config.json "
                         f"gives them, e.g. {', '.join(mismatched[:3])}")
    if missing:
        listed = f"{len(missing)} weight entries the config names are not in {folder}'s weights, e.g. " \
                 f"{', '.join(missing[:4])}"
        if not allow_missing:
            raise ValueError(f"{what}: {listed}; transformers would start them at random. Fix the folder, or pass "
                             "--allow-missing to train with them random (they are then listed)")
        warnings.warn(f"{what}: --allow-missing: {listed}; they start at random: {', '.join(missing)}", stacklevel=3)
    return model, missing


def check_tokenizer_tells_apart(tokenizer: "HFTokenizer", what: str) -> None:
    """Refuses a tokenizer that gives different class prompts the same ids (every zero-shot logit would tie)."""
    prompts = ["a photo of a cat.", "a photo of a dog.", "a photo of a bird.", "a photo of the number seven."]
    ids = tokenizer(prompts)["input_ids"]
    if len({tuple(row.tolist()) for row in ids}) < 2:
        raise ValueError(f"{what}: its tokenizer gives {len(prompts)} different prompts the same ids "
                         f"({ids[0].tolist()}): zero-shot heads would tie every class; save the model's real tokenizer "
                         "into the folder")


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def resize_position_embeddings(embeddings: nn.Module, size: int) -> None:
    """Resamples a CLIP/SigLIP vision embedding module's position table to `size` x `size` inputs, in place, with
    the module's own `interpolate_pos_encoding` (so the model then equals `interpolate_pos_encoding=True`)."""
    patches = (size // embeddings.patch_size) ** 2
    extra = embeddings.num_positions - embeddings.num_patches  # CLIP's class token: 1; SigLIP: 0
    weight = embeddings.position_embedding.weight
    probe = weight.new_zeros(1, patches + extra, weight.shape[1])
    with torch.no_grad():
        resampled = embeddings.interpolate_pos_encoding(probe, size, size)[0]
    table = nn.Embedding(patches + extra, weight.shape[1], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        table.weight.copy_(resampled)
    embeddings.position_embedding = table
    embeddings.image_size, embeddings.num_patches, embeddings.num_positions = size, patches, patches + extra
    embeddings.register_buffer("position_ids", torch.arange(patches + extra, device=weight.device).expand((1, -1)),
                               persistent=False)


def save_hf_export(built: HFModel, folder: Union[str, Path], *, replace: bool = False) -> Path:
    """Writes the whole model (the fine-tuned image tower, the original text tower) with `save_pretrained`, its
    tokenizer (`save_pretrained`: the files it uses, nothing else of the source folder) and its processor
    settings (preprocessor_config.json, at the trained size), so that `transformers.AutoModel.from_pretrained`
    (and `CLIPVisionModel.from_pretrained` for the tower alone) loads it unchanged. The folder is staged and
    renamed into place whole (`lore.files.staged_folder`).

    Args:
        replace: replace an existing `folder` (a run's own export/); otherwise it must be new or empty.
    """
    config = built.model.config
    for part in ("vision_config", "text_config"):  # a tower class loads its sub-config alone: it must carry the width
        if hasattr(config, "projection_dim") and hasattr(getattr(config, part, None), "projection_dim"):
            getattr(config, part).projection_dim = config.projection_dim
    with staged_folder(folder, replace=replace) as staging:
        built.model.save_pretrained(staging, safe_serialization=True)
        if built.tokenizer is not None:
            built.tokenizer.tokenizer.save_pretrained(staging)
        processor = {key: value for key, value in built.processor.items() if not key.startswith("_")}
        if processor_size(processor) != built.image_size:  # trained at another size: the processor says so
            processor = with_size(processor, built.image_size)
        write_json(staging / "preprocessor_config.json", processor)
    return Path(folder)


def _vision_config(model: nn.Module):
    config = model.config
    return getattr(config, "vision_config", config)


__all__ = ["ARCHITECTURES", "HFImageTower", "HFModel", "HFTextTower", "HFTokenizer", "check_tokenizer_tells_apart",
           "is_hf_folder", "load_hf", "read_processor", "resize_position_embeddings", "save_hf_export"]
