"""Image datasets for training and evaluation: the bundled digits, ImageFolder directories, torchvision
datasets on disk.

Every dataset yields (image [3, H, W] in [0, 1], label, index). The order of
each epoch is a permutation drawn from (seed, epoch), identical on every
rank; a global batch is `world_size * batch_size` consecutive indices and
rank r takes its r-th slice, so a DDP run sees exactly the batches of a single
process with the global batch size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset

from .digits import load_digits_images
from .specs import DATA_FORMS, UnreadableImageError, is_image_folder, is_shard_spec


class TensorImages(Dataset):
    """In-memory images [N, 3, H, W] in [0, 1] with labels [N]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classnames: tuple[str, ...]) -> None:
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images [N, C, H, W] and labels [N] must agree, got {tuple(images.shape)} and {tuple(labels.shape)}")
        self.images, self.labels, self.classnames = images, labels, classnames

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index]), index


class IndexedImages(Dataset):
    """Adds the index to an (image, label) dataset; an undecodable file raises `UnreadableImageError` naming it."""

    def __init__(self, base: Dataset, classnames: tuple[str, ...]) -> None:
        self.base, self.classnames = base, classnames

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        try:
            image, label = self.base[index]
        except (OSError, SyntaxError, ValueError) as error:  # PIL: truncated / unidentified / broken files
            raise UnreadableImageError(f"image {self.source(index)} cannot be decoded: {error}") from error
        return image, int(label), index

    def source(self, index: int) -> str:
        """The file behind item `index` (or a description when the dataset has no files)."""
        samples = getattr(self.base, "samples", None)
        return str(samples[index][0]) if samples else f"#{index} of {type(self.base).__name__}"


def check_data_spec(spec: str, flag: str = "--data") -> None:
    """Refuses a data spec that names nothing, before any model is built or any file written.

    Raises:
        ValueError: a malformed spec. FileNotFoundError: a folder, root or shard that does not exist (named).
    """
    if spec == "digits":
        return
    if spec.startswith("torchvision:"):
        parts = spec.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(f"{flag} {spec!r}: torchvision datasets are written 'torchvision:NAME:ROOT'")
        if not Path(parts[2]).is_dir():
            raise FileNotFoundError(f"{flag} {spec!r}: no folder {parts[2]} (torchvision datasets are read from disk: "
                                    "no downloads here)")
        return
    if is_shard_spec(spec):
        from .shards import shard_paths

        shard_paths(spec)
        return
    if not Path(spec).is_dir():
        raise FileNotFoundError(f"{flag} {spec!r} is none of the forms data takes, {DATA_FORMS} (no such folder)")


def build_dataset(spec: str, image_size: int, *, split: str = "train", seed: int = 0,
                  classes: Optional[Sequence[str]] = None) -> Dataset:
    """Builds a dataset from a spec string.

    Args:
        spec: "digits", a directory in ImageFolder layout (one sub-folder per class),
            "torchvision:NAME:ROOT" for a torchvision dataset already downloaded to ROOT, or "wds:PATTERN" for
            webdataset tar shards (`lore.data.shards`: training data only, it has no test split).
        image_size: side of the square images returned (bicubic resize of the short side, centre crop:
            CLIP's preprocessing).
        split: "train" or "test"; the digits also have "validation" (`Digits.splits`: a fixed stratified
            split, 1068 / 275 / 454 digits at seed 0); torchvision: train=True/False; an ImageFolder
            directory is used whole.
        seed: seed of the digits split.
        classes: image folders only: keep just these class folders (e.g. `read_class_list("imagenet100")`);
            every one must exist. Labels follow their sorted order, so train and probe folders agree.

    Folders named by ImageNet WordNet ids (n01440764, ...) get their real class names (open_clip's
    OpenAI names), so zero-shot heads and probes read "tench", not the id.
    """
    if classes is not None and not is_image_folder(spec):
        raise ValueError(f"classes selects class folders of an image-folder dataset; {spec!r} is not one")
    check_data_spec(spec, "data")
    if is_shard_spec(spec):  # webdataset shards (lore.data.shards; the `webdataset` extra)
        from .shards import ShardImages

        return ShardImages(spec, image_transform(image_size, bicubic=True))
    if spec == "digits":
        part = load_digits_images(image_size).splits(seed).part(split)
        return TensorImages(part.images, part.labels, part.classnames)
    if split not in ("train", "test"):
        raise ValueError(f"split {split!r}: only the digits have a validation part; {spec!r} has train and test")

    transform = image_transform(image_size, bicubic=True)
    if spec.startswith("torchvision:"):
        return _torchvision_dataset(spec, split, transform)
    from .folders import class_folder_dataset

    folder = class_folder_dataset(spec, classes, transform)
    return IndexedImages(folder, folder.classnames)


def _torchvision_dataset(spec: str, split: str, transform) -> "IndexedImages":
    """A torchvision dataset already downloaded to ROOT ("torchvision:NAME:ROOT", checked), train or test split."""
    from torchvision import datasets

    _, name, root = spec.split(":", 2)
    if not hasattr(datasets, name):
        raise ValueError(f"torchvision has no dataset {name!r}")
    try:
        base = getattr(datasets, name)(root=root, train=(split == "train"), download=False, transform=transform)
    except RuntimeError as error:  # torchvision's "Dataset not found" (we never download)
        raise FileNotFoundError(f"{name} not found under {root} (no downloads here): {error}") from error
    return IndexedImages(base, tuple(getattr(base, "classes", ())))


def read_class_list(name_or_path: str) -> list[str]:
    """Class folder names: "imagenet100" (the standard ImageNet-100 list of CMC, Tian et al. 2019, shipped as
    lore/data/imagenet100.txt) or a text file with one name per line (blank lines and #-comments ignored)."""
    path = Path(__file__).with_name("imagenet100.txt") if name_or_path == "imagenet100" else Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"classes: {name_or_path!r} is neither 'imagenet100' nor a class-list file")
    names = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n]
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"class list {path} must name at least 2 distinct folders, got {len(names)} ({len(set(names))} distinct)")
    return names


def image_transform(image_size: int, *, bicubic: bool = False):
    """PIL image -> RGB uint8 tensor [3, S, S] in [0, 255] (`as_float_pixels` makes it [0, 1]): resize the short
    side to S, centre crop (CLIP's preprocessing resizes bicubically; `bicubic=True` matches it), no
    normalisation (encoders normalise inside)."""
    from torchvision import transforms

    interpolation = transforms.InterpolationMode.BICUBIC if bicubic else transforms.InterpolationMode.BILINEAR
    return transforms.Compose([transforms.Resize(image_size, interpolation=interpolation), transforms.CenterCrop(image_size),
                               transforms.Lambda(_to_rgb), transforms.PILToTensor()])


def as_float_pixels(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as float32: uint8 images [.., H, W] in [0, 255] divided by 255 (exactly what
    torchvision's ToTensor computes), float images returned as they are. Decoded images travel as uint8 (a
    quarter of the bytes) and become floats where they are used: on the GPU, for training."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images


def _to_rgb(image):
    return image.convert("RGB")


def epoch_order(num_samples: int, epoch: int, seed: int) -> torch.Tensor:
    """The permutation of [0, N) used in `epoch`, the same on every rank and every resume."""
    return torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batches_per_epoch(num_samples: int, global_batch: int) -> int:
    """Full global batches per epoch (the ragged tail is dropped so that ranks stay in step)."""
    count = num_samples // global_batch
    if count == 0:
        raise ValueError(f"the dataset has {num_samples} samples, fewer than one global batch of {global_batch}")
    return count


def load_batch(dataset: Dataset, indices: torch.Tensor, workers_pool=None, *,
               on_unreadable: Optional[Callable[[str], None]] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stacks dataset items at `indices` into (images [B, 3, H, W], labels [B], indices [B]).

    Args:
        dataset: a dataset of (image, label, ...) items.
        indices: [B] int64 positions in it.
        workers_pool: optional thread pool decoding images in parallel.
        on_unreadable: None: an undecodable image raises `UnreadableImageError` naming its file. Otherwise
            it is called with that error's message and the item is replaced by the next decodable index
            (i + 1, i + 2, ... modulo N): deterministic, so every resume and every rank make the same choice.
            The returned indices are those actually loaded.
    """
    if isinstance(dataset, TensorImages):
        return dataset.images[indices], dataset.labels[indices], indices

    def load(index: int):
        return load_item(dataset, index, on_unreadable)

    items = list(workers_pool.map(load, indices.tolist())) if workers_pool else [load(i) for i in indices.tolist()]
    images = as_float_pixels(torch.stack([item[0] for item in items]))
    labels = torch.tensor([item[1] for item in items], dtype=torch.long)
    return images, labels, torch.tensor([item[2] for item in items], dtype=torch.long)


def load_item(dataset: Dataset, index: int, on_unreadable: Optional[Callable[[str], None]]):
    """Item `index`, or with `on_unreadable` the next decodable one (i + 1, i + 2, ... mod N), reporting each skip."""
    for offset in range(len(dataset)):
        try:
            return dataset[(index + offset) % len(dataset)]
        except UnreadableImageError as error:
            if on_unreadable is None:
                raise
            on_unreadable(str(error))
    raise UnreadableImageError(f"no image of the dataset ({len(dataset)} files) can be decoded")


def probe_subset(dataset: Dataset, size: int, seed: int, *, workers_pool=None,
                 on_unreadable: Optional[Callable[[str], None]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random subset of `size` items as tensors (images, labels); `workers_pool` and `on_unreadable`
    as in `load_batch`."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 17))[: min(size, len(dataset))]
    images, labels, _ = load_batch(dataset, order, workers_pool, on_unreadable=on_unreadable)
    return images, labels


class DatasetPart(Dataset):
    """The items `indices` of `base`, with its class names (and file names, for error messages)."""

    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base, self.indices = base, list(indices)
        self.classnames = getattr(base, "classnames", ())

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.base[self.indices[index]]

    def source(self, index: int) -> str:
        """The file behind item `index`, as the base dataset names it."""
        source = getattr(self.base, "source", None)
        return source(self.indices[index]) if source else f"#{self.indices[index]}"


def split_disjoint(dataset: Dataset, first_share: float, seed: int) -> tuple[DatasetPart, DatasetPart]:
    """A seeded random split of `dataset` into two disjoint parts, the first holding `first_share` of the items
    (at least one item each; stratification is not attempted)."""
    if not 0 < first_share < 1:
        raise ValueError(f"first_share must lie in (0, 1), got {first_share}")
    if len(dataset) < 2:
        raise ValueError(f"cannot split a dataset of {len(dataset)} item(s) into two non-empty parts")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 29)).tolist()
    cut = min(max(1, round(first_share * len(order))), len(order) - 1)
    return DatasetPart(dataset, sorted(order[:cut])), DatasetPart(dataset, sorted(order[cut:]))


def dataset_classnames(dataset: Dataset) -> Optional[tuple[str, ...]]:
    """The dataset's class names in label order (its `.classnames`), or None when it has none."""
    names = getattr(dataset, "classnames", None)
    return tuple(names) if names else None


def check_same_classes(first: Dataset, second: Dataset, first_name: str, second_name: str) -> None:
    """Refuses two datasets whose labels index different class lists (a probe or head fitted on one and scored
    on the other would compare label 3 of one list with label 3 of another).

    Raises:
        ValueError: naming both datasets and the first class where they differ. Datasets without class names
            are not compared.
    """
    a, b = dataset_classnames(first), dataset_classnames(second)
    if a is None or b is None or a == b:
        return
    where = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    shown = lambda names: repr(names[where]) if where < len(names) else "nothing"  # noqa: E731
    raise ValueError(f"{first_name} and {second_name} have different classes ({len(a)} vs {len(b)}; label {where} is "
                     f"{shown(a)} vs {shown(b)}); their labels cannot be compared")
