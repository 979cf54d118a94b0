"""Export a fine-tuned encoder so that others can load it in one line.

- open_clip models: a `local-dir` folder (`open_clip_config.json` +
  `open_clip_model.safetensors`) holding the full CLIP model with the
  fine-tuned image tower, loadable with
  ``open_clip.create_model_and_transforms("local-dir:PATH")`` or
  ``lore.load_open_clip("local-dir:PATH")``;
- timm and digits encoders: `encoder.safetensors` (the backbone's state) and
  `encoder.json` (how to rebuild it), loadable with ``lore.load_exported(PATH)``.

The writer (`export_encoder`, which hands each model to its family's exporter, `lore.models.families`) and the
readers (`load_exported` for the encoder alone, `load_export_folder` for
the model with its text tower, as `lore eval` uses it) live here together; every file is written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Union

import torch

from ..files import check_complete, missing_folder_hint, staged_folder
from ..jsonio import write_json
from ..plugins import resolve
from .build import BuiltModel, build_model
from .families import ModelFamily, family_named
from .hf import is_hf_folder, load_hf, save_hf_export
from .encoders import OPEN_CLIP_WEIGHTS, ImageEncoder, load_open_clip, load_state_file, load_timm, save_state_file


def _family_of(built: BuiltModel) -> ModelFamily:
    """The family whose exporter writes `built`: the one that built it, else the one its kind implies (a
    `BuiltModel` made by hand or read back from an export folder)."""
    if built.family:
        return family_named(built.family)
    if built.hf is not None:
        return family_named("hf")
    return family_named(_FAMILY_OF_KIND.get(built.kind, "digits"))  # an encoder alone: its backbone's state


_FAMILY_OF_KIND = {"open_clip": "open_clip", "digits-clip": "digits-clip", "timm": "timm", "digits": "digits"}


def exported_weights(built: BuiltModel) -> torch.nn.Module:
    """The module whose state `export_encoder` writes for `built` (its family's `exported_weights`; by default the
    encoder's backbone), which `lore.training.disk` sizes."""
    family = _family_of(built)
    if family.exported_weights is None:
        return built.encoder.backbone
    return resolve(family.exported_weights, f"the exported weights of model family {family.name!r}")(built)


def hf_weights(built: BuiltModel) -> torch.nn.Module:
    """An `hf:` model's export: the whole `transformers` model."""
    return built.hf.model


def open_clip_weights(built: BuiltModel) -> torch.nn.Module:
    """An open_clip model's export: the whole CLIP model (its visual.* is the tuned tower)."""
    return built.clip


def digits_clip_weights(built: BuiltModel) -> torch.nn.Module:
    """The digits CLIP's export: the backbone and the whole model (for zero-shot evaluation of the export)."""
    return torch.nn.ModuleList([built.encoder.backbone, built.clip])


def export_encoder(built, model_name: str, folder: Union[str, Path], *, replace: bool = False) -> Path:
    """Writes the fine-tuned encoder of a `BuiltModel` into `folder` with its model family's exporter
    (`lore.models.families`), staged and renamed into place whole (`lore.files.staged_folder`); returns the folder.

    Args:
        replace: replace an existing `folder` (a run's own export/, never followed if it is a link); otherwise
            it must be new or empty.

    Raises:
        ValueError: the family registers no exporter.
    """
    family = _family_of(built)
    if family.export is None:
        raise ValueError(f"model family {family.name!r} registers no exporter, so {model_name!r} cannot be exported")
    return resolve(family.export, f"the exporter of model family {family.name!r}")(built, model_name, Path(folder),
                                                                                   replace)


def check_exportable(built: BuiltModel, model_name: str) -> None:
    """Refuses, before any training, a model whose family registers no exporter (the run would end without its
    export)."""
    family = _family_of(built)
    if family.export is None:
        raise ValueError(f"model family {family.name!r} registers no exporter, so a run of {model_name!r} could not "
                         "write its export; register the family with export=...")


def export_hf(built: BuiltModel, model_name: str, folder: Path, replace: bool) -> Path:
    """An `hf:` model as a `transformers` folder, loadable by transformers and by lore as hf:FOLDER."""
    return save_hf_export(built.hf, folder, replace=replace)


def export_open_clip(built: BuiltModel, model_name: str, folder: Path, replace: bool) -> Path:
    """An open_clip model as a `local-dir` folder: open_clip_config.json + open_clip_model.safetensors."""
    import open_clip

    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"no open_clip config found for {model_name!r}; cannot write a loadable export")
    with staged_folder(folder, replace=replace) as staging:
        write_json(staging / "open_clip_config.json", {"model_cfg": config, "preprocess_cfg": {
            "mean": built.encoder.mean.flatten().tolist(), "std": built.encoder.std.flatten().tolist()}}, indent=2)
        save_state_file(built.clip.state_dict(), staging / OPEN_CLIP_WEIGHTS)  # visual.* is the tuned tower
    return folder


def export_encoder_files(built: BuiltModel, model_name: str, folder: Path, replace: bool) -> Path:
    """A timm or digits encoder as encoder.safetensors (the backbone's state) + encoder.json (how to rebuild it),
    loadable with `load_exported`; the digits CLIP adds clip.safetensors (its text tower, for zero-shot)."""
    with staged_folder(folder, replace=replace) as staging:
        save_state_file(built.encoder.backbone.state_dict(), staging / "encoder.safetensors")
        if built.kind == "digits-clip":
            save_state_file(built.clip.state_dict(), staging / "clip.safetensors")
        spec = {"kind": built.kind, "model": model_name, "mean": built.encoder.mean.flatten().tolist(),
                "std": built.encoder.std.flatten().tolist(), "embed_dim": built.encoder.embed_dim,
                "image_size": built.image_size}
        write_json(staging / "encoder.json", spec, indent=2)
    return folder


def load_exported(folder: Union[str, Path], device: Union[str, torch.device] = "cpu") -> ImageEncoder:
    """Loads any `export_encoder` folder back as an `ImageEncoder` (pixels in [0, 1]); an incomplete folder (an
    interrupted export) is refused."""
    folder = Path(folder)
    check_export_folder(folder)
    if (folder / "open_clip_config.json").is_file():
        return load_open_clip(f"local-dir:{folder}", device=device).encoder
    if is_hf_folder(folder):
        return load_hf(f"hf:{folder}", device=device).encoder
    spec_path = folder / "encoder.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{folder} holds no lore export (no open_clip_config.json or encoder.json)")
    spec = read_export_spec(spec_path)
    if spec["kind"] == "timm":
        return load_timm(spec["model"].removeprefix("timm:"), checkpoint=folder / "encoder.safetensors",
                         image_size=spec["image_size"], device=device)
    from .digits import SmallConvNet

    state = load_state_file(folder / "encoder.safetensors")
    if "features.0.weight" not in state:
        raise ValueError(f"{folder / 'encoder.safetensors'} does not hold a digits encoder (no features.0.weight; "
                         f"keys: {sorted(state)[:5]}...)")
    backbone = SmallConvNet(embed_dim=spec["embed_dim"], width=state["features.0.weight"].shape[0])
    try:
        backbone.load_state_dict(state)
    except RuntimeError as error:  # foreign or resized keys: torch's report, named as what it means
        raise ValueError(f"{folder / 'encoder.safetensors'} does not fit the encoder {spec_path} describes: "
                         f"{str(error).splitlines()[0]}") from None
    return ImageEncoder(backbone, spec["mean"], spec["std"], embed_dim=spec["embed_dim"]).to(device)


def check_export_folder(folder: Path) -> None:
    """Refuses a missing export folder (naming a staging folder an interrupted export left) or an incomplete one."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no export folder {folder}{missing_folder_hint(folder)}")
    check_complete(folder, "export folder")


def is_export_folder(path: Path) -> bool:
    """Whether `path` is a folder `export_encoder` wrote (open_clip_config.json, encoder.json, or a supported
    `transformers` checkpoint)."""
    return path.is_dir() and ((path / "open_clip_config.json").is_file() or (path / "encoder.json").is_file()
                              or is_hf_folder(path))


def load_export_folder(path: Path, image_size: Optional[int], *, cache_dir: Path, seed: int,
                       device: torch.device) -> BuiltModel:
    """An `export_encoder` folder as a `BuiltModel`: open_clip's with its text tower, the digits CLIP with its
    text tower, or a timm/digits encoder alone (kind "export").

    Args:
        image_size: input side; None: the one the export was trained at.

    Raises:
        FileNotFoundError: not an export folder. ValueError: an incomplete folder (an interrupted export), or an
            encoder.json that lacks image_size and none given.
    """
    check_export_folder(path)
    if (path / "open_clip_config.json").is_file():
        return build_model(f"local-dir:{path}", None, image_size, cache_dir=cache_dir, seed=seed, device=device)
    if is_hf_folder(path):
        return build_model(f"hf:{path}", None, image_size, cache_dir=cache_dir, seed=seed, device=device)
    if not (path / "encoder.json").is_file():
        raise FileNotFoundError(f"{path} holds no lore export (no open_clip_config.json or encoder.json)")
    size = image_size or exported_image_size(path)
    if (path / "clip.safetensors").is_file():
        from .digits_clip import DigitsCLIP, digits_tokenizer

        clip = DigitsCLIP()
        clip.load_state_dict(load_state_file(path / "clip.safetensors"))
        return BuiltModel(clip.visual.to(device), size or 16, clip.to(device), digits_tokenizer(), kind="digits-clip")
    encoder = load_exported(path, device=device)
    if size is None:
        raise ValueError(f"{path / 'encoder.json'} lacks image_size; pass --image-size")
    return BuiltModel(encoder, size, kind="export")


def exported_image_size(folder: Path) -> Optional[int]:
    """The input side an export was trained at (encoder.json's image_size), or None when it does not say."""
    spec_path = folder / "encoder.json"
    if not spec_path.is_file():
        return None
    return read_export_spec(spec_path).get("image_size")  # a positive int when present (checked there)


#: what encoder.json must hold, by kind
_SPEC_FIELDS = {"timm": ("kind", "model", "image_size"), "digits": ("kind", "embed_dim", "mean", "std"),
                "digits-clip": ("kind", "embed_dim", "mean", "std")}


def read_export_spec(path: Path) -> dict:
    """An export's encoder.json, checked: readable JSON with the fields its kind needs; errors name the file and field."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(spec, dict) or spec.get("kind") not in _SPEC_FIELDS:
        kind = spec.get("kind") if isinstance(spec, dict) else None
        raise ValueError(f"{path}: kind must be one of {sorted(_SPEC_FIELDS)}, got {kind!r}")
    missing = [name for name in _SPEC_FIELDS[spec["kind"]] if name not in spec]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (a {spec['kind']} export needs "
                         f"{', '.join(_SPEC_FIELDS[spec['kind']])})")
    for name in ("image_size", "embed_dim"):
        value = spec.get(name)
        if name in spec and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{path}: {name} must be a positive integer, got {value!r}")
    if "model" in spec and not (isinstance(spec["model"], str) and spec["model"].removeprefix("timm:")):
        raise ValueError(f"{path}: model must name a timm model (e.g. 'timm:vit_base_patch16_224'), got {spec['model']!r}")
    for name in ("mean", "std"):
        value = spec.get(name)
        if name in spec and not (isinstance(value, list) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise ValueError(f"{path}: {name} must be a list of finite numbers (one per channel), got {value!r}")
    if "std" in spec and min(spec["std"]) <= 0:
        raise ValueError(f"{path}: std must be positive (the inputs are divided by it), got {spec['std']!r}")
    if "mean" in spec and "std" in spec and len(spec["mean"]) != len(spec["std"]):
        raise ValueError(f"{path}: mean and std must have one entry per channel each, got {len(spec['mean'])} and "
                         f"{len(spec['std'])}")
    return spec
