"""A Hugging Face `save_pretrained` folder, read before `transformers` builds anything: the folder checked, the
architecture its config names checked against what `hf:` supports, and the image processor's settings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from ..files import check_complete, missing_folder_hint
from ..validation import read_json_object

PREFIX = "hf:"
#: config.json's first architecture -> (lore kind, has a text tower)
ARCHITECTURES = {
    "CLIPModel": ("hf-clip", True),
    "CLIPVisionModelWithProjection": ("hf-clip-vision", False),
    "SiglipModel": ("hf-siglip", True),
    "SiglipVisionModel": ("hf-siglip-vision", False),
    "Dinov2Model": ("hf-dinov2", False),
}
#: config.json's first architecture -> the `model_type`s its class loads (a CLIP config naming Dinov2Model would
#: build a random DINOv2)
MODEL_TYPES = {
    "CLIPModel": ("clip",),
    "CLIPVisionModelWithProjection": ("clip", "clip_vision_model"),
    "SiglipModel": ("siglip",),
    "SiglipVisionModel": ("siglip", "siglip_vision_model"),
    "Dinov2Model": ("dinov2",),
}
#: the image processor's settings: `preprocessor_config.json`, or transformers 5's `processor_config.json`
#: (`CLIPProcessor.save_pretrained`), whose "image_processor" entry holds them
PROCESSOR_LAYOUTS = ("preprocessor_config.json", "processor_config.json")
#: a text tower's tokenizer is read from one of these (AutoTokenizer without them builds a 2-token tokenizer
#: that gives every prompt the same ids)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")
def processor_file(folder: Path) -> Optional[Path]:
    """The file of `PROCESSOR_LAYOUTS` that `folder` holds, or None."""
    return next((folder / name for name in PROCESSOR_LAYOUTS if (folder / name).is_file()), None)


def folder_of(name: str) -> Path:
    """The folder of an `hf:PATH` model name, checked: a missing folder or file is a one-line error, and so is a
    folder a lore export left incomplete."""
    folder = Path(name[len(PREFIX):]).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model {name!r}: no folder {folder} (hf: takes a local transformers folder; nothing "
                                f"is downloaded){missing_folder_hint(folder)}")
    check_complete(folder, f"model {name!r}:")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"model {name!r}: {folder} has no config.json (save the model with save_pretrained)")
    if processor_file(folder) is None:
        raise FileNotFoundError(f"model {name!r}: {folder} has no preprocessor_config.json or processor_config.json "
                                "(save the image processor or processor with save_pretrained)")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise FileNotFoundError(f"model {name!r}: {folder} holds no weights (model.safetensors)")
    return folder


def is_hf_folder(path: Path) -> bool:
    """Whether `path` holds a `transformers` checkpoint of a supported class (an `hf:` export included)."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file() and processor_file(path) is not None):
        return False
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    return isinstance(architectures, list) and bool(architectures) and architectures[0] in ARCHITECTURES


def read_processor(folder: Path, what: str) -> dict:
    """The image processor's settings of `folder`, checked: image_mean and image_std are finite numbers, one per
    channel or one for all three (transformers accepts a scalar), std positive; they come back as 3-lists.

    Raises:
        ValueError: naming the file and the field.
    """
    path = processor_file(folder)
    assert path is not None, "folder_of checked it"
    processor = read_json_object(path, f"{what}:", holds="")
    if path.name == "processor_config.json":
        inner = processor.get("image_processor")
        if not isinstance(inner, dict):
            raise ValueError(f"{what}: {path} holds no \"image_processor\" object (save the processor with "
                             "save_pretrained, or its image processor alone)")
        processor = inner
    processor = dict(processor)
    for key in ("image_mean", "image_std"):
        processor[key] = _channels(processor.get(key), path, key)
    if min(processor["image_std"]) <= 0:
        raise ValueError(f"{path}: image_std must be positive (pixels are divided by it), got {processor['image_std']}")
    return processor


def _channels(value: Any, path: Path, key: str) -> list[float]:
    """A processor's per-channel value as three floats (a number or a 1-list applies to every channel)."""
    numbers = value if isinstance(value, list) else [value]
    if not (len(numbers) in (1, 3) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           and math.isfinite(v) for v in numbers)):
        shown = "missing" if value is None else repr(value)
        raise ValueError(f"{path}: {key} must be a finite number or a list of 3 (one per RGB channel), got {shown}")
    return [float(v) for v in numbers] * (3 // len(numbers))


def check_architecture(config: dict, folder: Path, what: str) -> tuple[str, bool]:
    """(lore kind, has a text tower) of the architecture config.json names; refuses one `hf:` does not support, or
    whose model_type contradicts it."""
    architectures = config.get("architectures")
    architecture = architectures[0] if isinstance(architectures, list) and architectures else "(none named)"
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{what}: {folder / 'config.json'} names architecture {architecture!r}, which is not supported; "
                         f"hf: takes {', '.join(ARCHITECTURES)}")
    if config.get("model_type") not in MODEL_TYPES[architecture]:
        raise ValueError(f"{what}: {folder / 'config.json'} names {architecture} but model_type "
                         f"{config.get('model_type')!r} (a {architecture} config has model_type "
                         f"{' or '.join(map(repr, MODEL_TYPES[architecture]))})")
    return ARCHITECTURES[architecture]


def processor_size(processor: dict) -> Optional[int]:
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


def with_size(processor: dict, size: int) -> dict:
    processor = dict(processor)
    if "crop_size" in processor:
        processor["crop_size"] = {"height": size, "width": size}
        processor["size"] = {"shortest_edge": size}
    else:
        processor["size"] = {"height": size, "width": size}
    return processor
