"""The benchmark's store of finished results: one JSON file per model and dataset, reused only when it was
computed from exactly the same model, settings, weights, data and head."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from ..jsonio import write_json

#: what a stored result's key holds besides its settings, and how a difference is named
KEY_PARTS = {"model": "model", "weights_sha256": "weights (the encoder changed)",
             "data_fingerprint": "data (the files or pixels under the data root changed)",
             "head_fingerprint": "head (fitted on other data, samples or weights, or another head file)"}


@dataclass
class DatasetResult:
    """One model on one benchmark dataset; `as_dict()` is its stored JSON (then the key it was computed from).

    Attributes:
        clean: clean accuracy.
        robust: {eps: robust accuracy, the worst case over the cascade}.
        robust_by_attack: {eps: {cascade so far: robust accuracy}} (`EvalReport.robust_accuracy`).
        attacks: the cascades that gave `robust` (one per eps, deduplicated).
        samples: images evaluated; classes: the dataset's classes; dataset_images: the size of its whole split.
        head: how the head was made ("zero-shot", "linear (...)").
        warnings: about the split and the attacks.
        alignment: mean cosine of clean embeddings with their class embedding, when measured.
    """

    clean: float
    robust: dict[str, float]
    robust_by_attack: dict[str, dict[str, float]]
    attacks: list[str]
    samples: int
    classes: int
    head: str
    warnings: list[str]
    dataset_images: int
    alignment: Optional[float] = None

    def as_dict(self) -> dict:
        """The JSON record, in field order, without an alignment that was not measured."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not (f.name == "alignment" and self.alignment is None)}


def canonical_model(model: str) -> str:
    """A model as stored with its results: folders by absolute path (so ./runs/x and runs/x agree)."""
    return str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model


def reuse_result(path: Path, key: dict) -> dict:
    """The stored result at `path` if it was computed from exactly `key` ({"settings", and each of `KEY_PARTS`});
    otherwise a ValueError naming every part that differs."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable result ({error}); delete it to recompute that dataset") from None
    required = ("clean", "robust", "samples", "settings")
    if not isinstance(result, dict) or any(key not in result for key in required) \
            or not isinstance(result["settings"], dict) or not isinstance(result["robust"], dict) \
            or not _is_fraction(result["clean"]) or not all(_is_fraction(v) for v in result["robust"].values()):
        raise ValueError(f"{path} is not a dataset result (it needs {', '.join(required)}, accuracies in [0, 1]); "
                         "delete it to recompute that dataset")
    differences = [f"{k}: stored {result['settings'].get(k)!r} vs now {v!r}"
                   for k, v in key["settings"].items() if result["settings"].get(k) != v]
    for part, label in KEY_PARTS.items():
        if result.get(part) != key[part]:
            differences.append(f"{label}: stored {result.get(part)!r} vs now {key[part]!r}")
    if differences:
        raise ValueError(f"{path} was computed under other settings ({'; '.join(differences)}); "
                         "use another --out folder, or delete that file to recompute it")
    return result


def store_result(path: Path, result: dict) -> None:
    """Writes one dataset's result atomically, creating its model's folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)


def _is_fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
