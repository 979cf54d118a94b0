"""The benchmark's datasets: checked present before any attack, and each made ready for one model (its seeded
test subset and its head, with the fingerprints a stored result is compared by)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..data.benchmark import build_benchmark_dataset
from ..data.images import probe_subset
from ..data.release_files import RELEASE_COUNTS
from ..models.build import BuiltModel, zero_shot_head
from ..provenance import dataset_fingerprint, tensors_sha256
from .head_cache import cached_class_embeddings, linear_head_for


@dataclass
class PreparedDataset:
    """One benchmark dataset made ready for one model: its evaluated subset, its head, and the fingerprints of
    both (a stored result is reused only when they match).

    Attributes:
        name: the CLIP_benchmark name.
        images: [N, 3, S, S] float in [0, 1], the seeded subset; labels: [N] int64.
        pixels_sha256: SHA-256 of the subset's pixels and labels as loaded (changed pixels change it).
        head: the classifier head on the encoder's features; head_kind: how it was made (shown in reports).
        head_fingerprint: SHA-256 of what the head was made from (text tower and prompts; or the encoder's
            weights, train data, sample count and seed; or a loaded head file's bytes).
        classnames, dataset_images: the class names and the size of the whole split; warnings: about the split.
        class_embeddings: [K, D] the zero-shot class embeddings, or None for a linear head.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    pixels_sha256: str
    head: torch.nn.Module
    head_kind: str
    head_fingerprint: str
    classnames: tuple
    dataset_images: int
    warnings: list
    class_embeddings: Optional[torch.Tensor]


def prepare_dataset(built: BuiltModel, name: str, data_root: Union[str, Path], *, samples: int, seed: int, pool=None,
                    cache_dir: str = "~/.cache/lore", linear_head: Optional[str] = None, head_samples: int = 10_000,
                    head_folder: Optional[Path] = None) -> PreparedDataset:
    """The seeded test subset of `name` and the head `built` is evaluated with (see `PreparedDataset`)."""
    device = next(built.encoder.parameters()).device
    dataset = build_benchmark_dataset(name, data_root, built.image_size)
    classnames, templates = tuple(dataset.classnames), dataset.templates
    partial = size_warning(name, len(dataset))
    images, labels = probe_subset(dataset, samples, seed, workers_pool=pool)
    class_embeddings = None
    if built.clip is not None:
        class_embeddings, head_fingerprint = cached_class_embeddings(built.clip, built.tokenizer, classnames, templates,
                                                                     cache_dir, with_key=True)
        head, head_kind = zero_shot_head(built, class_embeddings.to(device)), "zero-shot"
    else:
        head, head_kind, head_fingerprint = linear_head_for(built, name, data_root, linear_head, head_samples, seed,
                                                            pool, head_folder)
    if isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            width = built.encoder(images[:1].to(device)).shape[-1]
        if head.out_features != len(classnames) or head.in_features != width:
            raise ValueError(f"{name}: the linear head has {head.out_features} classes, the dataset {len(classnames)}; "
                             f"it takes {head.in_features} features, the encoder's features are {width} wide ({head_kind})")
    return PreparedDataset(name=name, images=images.to(device), labels=labels.to(device),
                           pixels_sha256=tensors_sha256(images, labels), head=head.to(device), head_kind=head_kind,
                           head_fingerprint=head_fingerprint, classnames=classnames, dataset_images=len(dataset),
                           warnings=[partial] if partial else [], class_embeddings=class_embeddings)


def check_data(datasets: Sequence[str], data_root: Union[str, Path]) -> list[dict]:
    """What each dataset holds under `data_root`, before any attack: [{"dataset", "status" ("ok", "partial", "more",
    "unreadable"), "images", "expected" (the release's count or None), "classes", "problem"}]."""
    found = []
    for name in datasets:
        entry: dict = {"dataset": name, "expected": RELEASE_COUNTS.get(name)}
        try:
            dataset = build_benchmark_dataset(name, data_root, 32)
        except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
            found.append({**entry, "status": "unreadable", "images": None, "classes": None, "problem": str(error)})
            continue
        images, expected = len(dataset), entry["expected"]
        status = "ok" if expected is None or images == expected else "partial" if images < expected else "more"
        found.append({**entry, "status": status, "images": images, "classes": len(dataset.classnames), "problem": None})
    return found


def size_warning(name: str, images: int) -> Optional[str]:
    """A warning when `name` holds another number of images than its release, or None."""
    expected = RELEASE_COUNTS.get(name)
    if expected is None or images == expected:
        return None
    return (f"{name}: {images} images where the release has {expected} "
            f"({'a partial copy' if images < expected else 'more than released'}): not the paper's test set")


def check_datasets_present(datasets: Sequence[str], data_root: Union[str, Path]) -> dict[str, dict]:
    """Opens every dataset (file lists, class names) before any evaluation: all missing ones are named at once,
    in minutes rather than after hours of attacks on the first ones. Returns {name: fingerprint of what it
    holds} (`lore.provenance.dataset_fingerprint`), stored with each result and compared on reuse."""
    problems, fingerprints = [], {}
    for name in datasets:
        try:
            fingerprints[name] = dataset_fingerprint(build_benchmark_dataset(name, data_root, 32), data_root)
        except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
            problems.append(f"- {error}")
    if problems:
        raise FileNotFoundError(f"{len(problems)} of {len(datasets)} benchmark datasets cannot be read under {data_root}:\n"
                                + "\n".join(problems))
    return fingerprints
