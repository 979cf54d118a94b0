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

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .encoders import ImageEncoder, check_patch_multiple

PREFIX = "hf:"
#: config.json's first architecture -> (lore kind, has a text tower)
ARCHITECTURES = {
    "CLIPModel": ("hf-clip", True),
    "CLIPVisionModelWithProjection": ("hf-clip-vision", False),
    "SiglipModel": ("hf-siglip", True),
    "SiglipVisionModel": ("hf-siglip-vision", False),
    "Dinov2Model": ("hf-dinov2", False),
}
#: the files besides the weights that make a folder loadable by `AutoProcessor` / `AutoTokenizer`
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json", "tokenizer.json",
                   "special_tokens_map.json", "vocab.json", "merges.txt", "spiece.model", "added_tokens.json",
                   "chat_template.json")


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
        source: the folder the checkpoint came from (its processor files go into the export).
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


def folder_of(name: str) -> Path:
    """The folder of an `hf:PATH` model name, checked: a missing folder or file is a one-line error."""
    folder = Path(name[len(PREFIX):]).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model {name!r}: no folder {folder} (hf: takes a local transformers folder; nothing "
                                "is downloaded)")
    for needed in ("config.json", "preprocessor_config.json"):
        if not (folder / needed).is_file():
            raise FileNotFoundError(f"model {name!r}: {folder} has no {needed} (save the model and its processor "
                                    "with save_pretrained)")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise FileNotFoundError(f"model {name!r}: {folder} holds no weights (model.safetensors)")
    return folder


def is_hf_folder(path: Path) -> bool:
    """Whether `path` holds a `transformers` checkpoint of a supported class (an `hf:` export included)."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file() and (path / "preprocessor_config.json").is_file()):
        return False
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, AttributeError):
        return False
    return bool(architectures) and architectures[0] in ARCHITECTURES


def load_hf(name: str, *, image_size: Optional[int] = None, device: Union[str, torch.device] = "cpu") -> HFModel:
    """Builds an `hf:PATH` model with `transformers` (the `hf` extra).

    Args:
        name: "hf:" and a local folder written by `save_pretrained`.
        image_size: the input side (default: the processor's crop size, else the model's).
        device: where the model goes.

    Raises:
        FileNotFoundError: a missing folder or file. ValueError: an architecture lore does not support, or an
        image size that is not a multiple of the patch size.
    """
    try:
        import transformers
    except ImportError:
        raise ImportError("hf: models need transformers: pip install 'lore-constrained[hf]'") from None
    folder = folder_of(name)
    config = json.loads((folder / "config.json").read_text())
    architecture = (config.get("architectures") or ["(none named)"])[0]
    if architecture not in ARCHITECTURES:
        raise ValueError(f"model {name!r}: {architecture} is not supported; hf: takes {', '.join(ARCHITECTURES)}")
    kind, has_text = ARCHITECTURES[architecture]
    model = getattr(transformers, architecture).from_pretrained(folder, local_files_only=True)
    model = model.float().to(device).eval()
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    size = image_size or _processor_size(processor) or _vision_config(model).image_size
    vision_model = model.vision_model if hasattr(model, "vision_model") else model
    if kind != "hf-dinov2":
        check_patch_multiple(size, _vision_config(model).patch_size, name)
        if size != _vision_config(model).image_size:
            resize_position_embeddings(vision_model.embeddings, size)
            _vision_config(model).image_size = size
    projection = getattr(model, "visual_projection", None)
    tower = HFImageTower(vision_model, projection)
    width = projection.out_features if projection is not None else _vision_config(model).hidden_size
    encoder = ImageEncoder(tower, processor["image_mean"], processor["image_std"], embed_dim=width).to(device)
    text = tokenizer = None
    if has_text:
        text = HFTextTower(model)
        fixed = kind == "hf-siglip"
        tokenizer = HFTokenizer(transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True),
                                max_length=model.config.text_config.max_position_embeddings, fixed_length=fixed)
    scale = float(model.logit_scale.exp()) if hasattr(model, "logit_scale") else 100.0
    bias = float(model.logit_bias) if hasattr(model, "logit_bias") else 0.0
    return HFModel(encoder, model, text, tokenizer, size, kind, scale, bias, folder)


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


def save_hf_export(built: HFModel, folder: Union[str, Path]) -> Path:
    """Writes the whole model (the fine-tuned image tower, the original text tower) with `save_pretrained`, and the
    source folder's processor and tokenizer files, so that `transformers.AutoModel.from_pretrained(folder)` (and
    `CLIPVisionModel.from_pretrained(folder)` for the tower alone) loads it unchanged."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = built.model.config
    for part in ("vision_config", "text_config"):  # a tower class loads its sub-config alone: it must carry the width
        if hasattr(config, "projection_dim") and hasattr(getattr(config, part, None), "projection_dim"):
            getattr(config, part).projection_dim = config.projection_dim
    built.model.save_pretrained(folder, safe_serialization=True)
    for name in PROCESSOR_FILES:
        if (built.source / name).is_file():
            shutil.copy2(built.source / name, folder / name)
    processor_path = folder / "preprocessor_config.json"
    processor = json.loads(processor_path.read_text())
    if _processor_size(processor) != built.image_size:  # trained at another size: the processor says so
        processor = _with_size(processor, built.image_size)
        processor_path.write_text(json.dumps(processor, indent=2) + "\n")
    return folder


def _vision_config(model: nn.Module):
    config = model.config
    return getattr(config, "vision_config", config)


def _processor_size(processor: dict) -> Optional[int]:
    """The square side a processor crops or resizes to (crop_size, else size), or None."""
    for key in ("crop_size", "size"):
        value = processor.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, dict):
            side = value.get("height") or value.get("shortest_edge")
            if side:
                return int(side)
    return None


def _with_size(processor: dict, size: int) -> dict:
    processor = dict(processor)
    if "crop_size" in processor:
        processor["crop_size"] = {"height": size, "width": size}
        processor["size"] = {"shortest_edge": size}
    else:
        processor["size"] = {"height": size, "width": size}
    return processor


__all__ = ["ARCHITECTURES", "HFImageTower", "HFModel", "HFTextTower", "HFTokenizer", "is_hf_folder", "load_hf",
           "resize_position_embeddings", "save_hf_export"]
