"""Checks shared by the typed configurations of `lore train` and `lore eval` (torch-free)."""

from __future__ import annotations

import json
import typing
from dataclasses import fields
from pathlib import Path
from typing import Union


def check_field_types(config) -> None:
    """Checks every field of a config dataclass against its annotation (int, float, str, bool, a `Literal` of
    names, Optional[...]).

    JSON config files carry their own types, so `"max_steps": "5"` or `"seed": 2.5` must be refused here,
    naming the key, instead of failing later inside the training loop.
    """
    hints = typing.get_type_hints(type(config))
    for item in fields(config):
        value, hint = getattr(config, item.name), hints[item.name]
        optional = typing.get_origin(hint) is Union and type(None) in typing.get_args(hint)
        if optional:
            if value is None:
                continue
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if typing.get_origin(hint) is typing.Literal:  # a name of `lore.vocabulary`
            if value not in typing.get_args(hint):
                raise ValueError(f"{item.name} must be one of {typing.get_args(hint)}, got {value!r}")
            continue
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            continue  # 1 is a fine float
        if hint in (int, float, str, bool) and (not isinstance(value, hint) or (hint is not bool and isinstance(value, bool))):
            expected = hint.__name__ + (" or null" if optional else "")
            raise ValueError(f"{item.name} must be {expected}, got {value!r} ({type(value).__name__})")


#: file suffixes of weights files: a name ending in one is a path, not a model name or a pretrained tag
WEIGHTS_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def looks_like_path(text: str) -> bool:
    """Whether a `--model` or `--pretrained` value names a file or folder rather than a model name or tag: it has a
    path separator, starts with "." or "~", or ends in a weights suffix (`WEIGHTS_SUFFIXES`). Such a value that
    does not exist is reported as a missing file, not as an unknown name."""
    return ("/" in text or "\\" in text or text.startswith((".", "~"))
            or Path(text).suffix in WEIGHTS_SUFFIXES)


def read_json_object(path: Union[str, Path], what: str = "config file", holds: str = "TrainConfig keys") -> dict:
    """Reads a JSON object from `path`, with one-line errors that name the file.

    Args:
        what: how the errors introduce the file ("config file", "model 'hf:x':", ...).
        holds: what the object holds, for the error of a file that holds no object ("" to say nothing).

    Raises:
        FileNotFoundError: no file. ValueError: not UTF-8, not JSON, or not a JSON object.
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{what} {path} not found") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text (JSON must be): {error.reason} at byte "
                         f"{error.start}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path} is not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{what} {path} must hold a JSON object{f' of {holds}' if holds else ''}, got a "
                         f"{type(values).__name__}")
    return values


#: the largest seed torch.manual_seed takes
MAX_SEED = 2**63 - 1


def check_seed_and_size(config: object, seed_fields: tuple[str, ...] = ("seed",)) -> None:
    """Refuses seeds outside [0, 2^63) and an image_size below 8 px, naming the field."""
    for name in seed_fields:
        value = getattr(config, name)
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f"{name} must lie in [0, 2^63), got {value}")
    size = getattr(config, "image_size", None)
    if size is not None and size < 8:
        raise ValueError(f"image_size must be >= 8 pixels (or omitted for the model's own), got {size}")
