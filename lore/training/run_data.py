"""A run's images: the training set, the held-out probe set, and the images its zero-shot head is fitted on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from ..data.images import (build_dataset, check_same_classes, dataset_classnames, probe_subset, read_class_list,
                           split_disjoint)
from ..data.specs import IMAGE_EXTENSIONS, PROBE_SHARE, UnreadableImageError, is_image_folder, is_shard_spec
from ..data.unreadable import UnreadableLog
from ..heads import ZeroShotHead
from ..jsonio import write_text_atomic
from ..models.build import BuiltModel, build_head
from ..reference import FrozenReference
from .config import TrainConfig
from .distributed import DistInfo
from .run_folder import PROBE_FILES

HEAD_IMAGES = 1000  #: images the zero-shot head (and the dual's feature standardisation) is fitted on


def train_and_probe_sets(config: TrainConfig, image_size: int, info: DistInfo) -> tuple[Any, Any]:
    """(training data, probe data). The probe is held out: `--probe-data`, the test split of a dataset that has
    one, or for an image folder `PROBE_SHARE` of it (at most probe_size images), which training then excludes;
    rank 0 lists that folder's probe files in probe_images.txt. Shards without --probe-data have no probe
    (None), which --probe-every 0 must say."""
    classes = read_class_list(config.classes) if config.classes else None
    data = build_dataset(config.data, image_size, split="train", seed=config.split_seed, classes=classes)
    if config.probe_data is not None:
        probe = build_dataset(config.probe_data, image_size, split="train", seed=config.split_seed,
                              classes=classes if Path(config.probe_data).is_dir() else None)
        check_same_classes(data, probe, f"training data {config.data}", f"probe data {config.probe_data}")
        return data, probe
    if is_shard_spec(config.data):
        if config.probe_every == 0:  # no probe runs, and shard methods need no head
            return data, None
        raise ValueError(f"--data {config.data}: shards have no held-out split; pass --probe-data (an image folder or "
                         "torchvision:NAME:ROOT with class names, which the probe's zero-shot head reads), or "
                         "--probe-every 0 for no probe")
    if not is_image_folder(config.data):
        return data, build_dataset(config.data, image_size, split=config.probe_split, seed=config.split_seed,
                                   classes=classes)
    if len(data) < 4:
        raise ValueError(f"--data {config.data} holds {len(data)} images: too few to hold a probe out of it (pass "
                         "--probe-data, or --probe-every 0 for no probe)")
    probe, train = split_disjoint(data, min(PROBE_SHARE, config.probe_size / len(data)), config.split_seed)
    if info.is_main:
        write_text_atomic(Path(config.output) / PROBE_FILES, "".join(f"{probe.source(i)}\n" for i in range(len(probe))))
    return train, probe


def note_samples_without_image(train_set: Any, unreadable: Optional[UnreadableLog]) -> None:
    """Shard samples without an image member are listed with the unreadable images (or, with
    --no-skip-unreadable, stop the run naming the first)."""
    left_out = getattr(train_set, "without_image", [])
    if not left_out:
        return
    if unreadable is None:
        raise UnreadableImageError(f"{len(left_out)} shard sample(s) hold no image member ({', '.join(IMAGE_EXTENSIONS)}),"
                                   f" e.g. {left_out[0]}; --skip-unreadable leaves them out and lists them")
    unreadable.note_without_image(left_out)


def probe_and_head(config: TrainConfig, built: BuiltModel, reference: FrozenReference, train_set: Any,
                   probe_source: Any, unreadable: Optional[UnreadableLog], device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, Optional[ZeroShotHead], torch.Tensor]:
    """(probe images [P, 3, S, S], probe labels [P], the zero-shot head or None, head images [H, 3, S, S]).

    The head is fitted on `HEAD_IMAGES` training images, or on the probe data for shards (whose class ids have
    no names); a run on shards without a probe has neither probe nor head (shard methods are unsupervised), and
    its head images still fit the dual's feature standardisation."""
    size = built.image_size
    if probe_source is None:
        probe_images, probe_labels = torch.empty(0, 3, size, size), torch.empty(0, dtype=torch.long)
        head_images, _ = probe_subset(train_set, HEAD_IMAGES, config.seed + 1, on_unreadable=unreadable)
        return probe_images, probe_labels, None, head_images
    probe_images, probe_labels = probe_subset(probe_source, config.probe_size, config.seed, on_unreadable=unreadable)
    head_set = probe_source if is_shard_spec(config.data) else train_set
    head_images, head_labels = probe_subset(head_set, HEAD_IMAGES, config.seed + 1, on_unreadable=unreadable)
    head = build_head(built, dataset_classnames(head_set), reference, head_images.to(device), head_labels.to(device))
    return probe_images, probe_labels, head, head_images
