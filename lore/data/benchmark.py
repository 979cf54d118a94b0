"""The paper's benchmark datasets, read from disk in the layouts their official releases unpack to.

`build_benchmark_dataset(name, root, image_size)` returns a dataset of
(image [3, S, S] in [0, 1], label, index) with `.classnames` in label order.
Each dataset is looked up under ROOT in the folder torchvision (and so
CLIP_benchmark) expects, either directly (one shared root, as CLIP_benchmark's
`--dataset_root`) or inside ROOT/NAME. Nothing is ever downloaded: a missing
dataset raises `BenchmarkDataMissing` with the layout it expects (`LAYOUTS`).

Readers: CIFAR-10/100 (python pickles, read with an unpickler that only builds
numpy arrays), STL-10 (binaries), Flowers-102 and the ImageNet-style / Caltech /
EuroSAT folders are read here (torchvision would also require the official
files' MD5 sums); DTD, Oxford Pets, Stanford Cars, FGVC-Aircraft and PCAM
(h5py) use torchvision's readers with `download=False`. Splits follow
CLIP_benchmark: the official test split where one exists; the whole set for
Caltech-101, EuroSAT, ImageNet-R and ImageNet-Sketch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
from torch.utils.data import Dataset

from .images import IndexedImages, image_transform
from .release_files import (LAYOUTS, RELEASE_FOLDERS, BenchmarkDataMissing, imagenet_split_folder, locate, need_file, read_cifar_pickle,
                            wnid_folders)
from .zero_shot import PAPER_DATASETS, zero_shot_metadata

_WHOLE_SET = ("caltech101", "eurosat", "imagenet-r", "imagenet_sketch")


def build_benchmark_dataset(name: str, root: Union[str, Path], image_size: int, *, split: str = "test") -> Dataset:
    """A benchmark dataset from disk.

    Args:
        name: a CLIP_benchmark name from `PAPER_DATASETS`.
        root: the data root (see `LAYOUTS`).
        image_size: side S of the returned images (bicubic resize of the short side + centre crop, as CLIP).
        split: "test" (evaluation) or "train" (fitting a linear head; trainval where the release has it).

    Returns:
        A dataset of (image [3, S, S] float in [0, 1], label int, index int) with `.classnames` and the
        zero-shot `.templates` ("{}" format strings), as `zero_shot_metadata` gives them.
    """
    if name not in PAPER_DATASETS:
        raise ValueError(f"unknown benchmark dataset {name!r}; choose from {list(PAPER_DATASETS)}")
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    if split == "train" and name in _WHOLE_SET:
        raise ValueError(f"{name} has no train split (it is evaluated whole); fit a linear head on another dataset")
    folder = locate(name, root)
    transform = image_transform(image_size, bicubic=True)
    classnames, templates = zero_shot_metadata(name, root)
    classnames = tuple(classnames)
    dataset = _READERS[name](folder, split, transform)
    dataset.classnames, dataset.templates = classnames, tuple(templates)
    folders = getattr(getattr(dataset, "base", None), "classes", None)
    if name in RELEASE_FOLDERS and folders is not None and sorted(folders) != sorted(RELEASE_FOLDERS[name]):
        unexpected = sorted(set(folders) - set(RELEASE_FOLDERS[name]))
        missing = sorted(set(RELEASE_FOLDERS[name]) - set(folders))
        raise BenchmarkDataMissing(
            f"{name} at {folder}: the class folders are not the release's (labels follow the sorted folder names, "
            f"so one misnamed folder shifts every label): unexpected {unexpected[:5]}, missing {missing[:5]}; "
            f"expected layout: {LAYOUTS[name]}")
    if len(dataset) == 0:
        raise BenchmarkDataMissing(f"{name} at {folder}: the {split} split holds no images")
    label_range = _label_range(dataset)
    if label_range is not None and (label_range[0] < 0 or label_range[1] >= len(classnames)):
        raise ValueError(f"{name} at {folder}: labels run from {label_range[0]} to {label_range[1]}, but the "
                         f"{len(classnames)} class names need labels in [0, {len(classnames) - 1}] (a damaged label file?)")
    return dataset


class ArrayImages(Dataset):
    """Images held as a uint8 array [N, H, W, 3] (CIFAR, STL-10, PCAM-like releases), transformed on access."""

    def __init__(self, pixels: np.ndarray, labels: Sequence[int], transform, source: str) -> None:
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or len(pixels) != len(labels):
            raise ValueError(f"{source}: expected pixels [N, H, W, 3] and N labels, got {pixels.shape} and {len(labels)}")
        self.pixels, self.labels, self.transform, self.source = pixels, list(labels), transform, source
        self.classnames: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.pixels[index])), int(self.labels[index]), index


def _label_range(dataset) -> Union[tuple[int, int], None]:
    """(smallest, largest) label, read from the dataset's label list without decoding images (None if it has
    none)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        base = getattr(dataset, "base", None)
        labels = getattr(base, "targets", None) or getattr(base, "_labels", None)
    return (int(min(labels)), int(max(labels))) if labels is not None and len(labels) else None


def _cifar(files: Sequence[str], label_key: str):
    def read(folder: Path, split: str, transform) -> ArrayImages:
        chosen = [f for f in files if (f.startswith("test") if split == "test" else not f.startswith("test"))]
        pixels, labels = [], []
        for name in chosen:
            batch = read_cifar_pickle(need_file(folder / name))
            pixels.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(int(y) for y in batch[label_key])
        return ArrayImages(np.concatenate(pixels), labels, transform, str(folder))
    return read


def _stl10(folder: Path, split: str, transform) -> ArrayImages:
    images = np.fromfile(need_file(folder / f"{split}_X.bin"), dtype=np.uint8)
    labels = np.fromfile(need_file(folder / f"{split}_y.bin"), dtype=np.uint8).astype(np.int64) - 1  # stored 1..10
    if images.size != len(labels) * 3 * 96 * 96:
        raise ValueError(f"{folder}/{split}_X.bin holds {images.size} bytes, not {len(labels)} images of 3x96x96")
    pixels = images.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)  # stored channel-major, column-major
    return ArrayImages(np.ascontiguousarray(pixels), labels.tolist(), transform, str(folder))


class _FileList(Dataset):
    """(path, label) pairs read with PIL; `samples` names the files so unreadable ones are reported by path."""

    def __init__(self, samples: list[tuple[str, int]], transform) -> None:
        self.samples, self.transform = samples, transform
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image), label


def _flowers(folder: Path, split: str, transform) -> IndexedImages:
    from scipy.io import loadmat

    labels = loadmat(str(need_file(folder / "imagelabels.mat")), squeeze_me=True)["labels"]
    ids = loadmat(str(need_file(folder / "setid.mat")), squeeze_me=True)["tstid" if split == "test" else "trnid"]
    samples = [(str(folder / "jpg" / f"image_{int(i):05d}.jpg"), int(labels[int(i) - 1]) - 1) for i in np.atleast_1d(ids)]
    return IndexedImages(_FileList(samples, transform), ())


def _image_folder(folder: Path, transform) -> IndexedImages:
    from torchvision.datasets import ImageFolder

    from .folders import check_links

    try:
        check_links(folder)
    except ValueError as error:
        raise BenchmarkDataMissing(str(error)) from None
    try:
        return IndexedImages(ImageFolder(str(folder), transform=transform), ())
    except FileNotFoundError as error:
        raise BenchmarkDataMissing(f"{folder}: {error}") from error


def _imagenet(name: str):
    def read(folder: Path, split: str, transform) -> IndexedImages:
        classes = imagenet_split_folder(name, folder, split)
        if split == "train":  # the test split's classes were checked by zero_shot_metadata; these must agree
            if wnid_folders(name, classes) != wnid_folders(name, imagenet_split_folder(name, folder, "test")):
                raise BenchmarkDataMissing(f"{name}: {classes} and the val folder hold different WordNet ids")
        return _image_folder(classes, transform)
    return read


def _torchvision(cls_name: str, splits: dict[str, str], **kwargs):
    def read(folder: Path, split: str, transform) -> IndexedImages:
        from torchvision import datasets

        root = folder.parent.parent if cls_name == "DTD" else folder.parent
        try:
            base = getattr(datasets, cls_name)(root=str(root), split=splits[split], transform=transform, download=False, **kwargs)
        except (RuntimeError, FileNotFoundError) as error:  # torchvision's "Dataset not found or corrupted"
            raise BenchmarkDataMissing(f"{cls_name} under {root}: {error}") from error
        except ImportError as error:  # PCAM needs h5py
            raise ModuleNotFoundError(f"{cls_name} needs an optional package: {error}; "
                                      'pip install "lore-constrained[benchmark]"') from error
        return IndexedImages(base, ())
    return read


_READERS = {
    "imagenet1k": _imagenet("imagenet1k"),
    "imagenet-r": _imagenet("imagenet-r"),
    "imagenet_sketch": _imagenet("imagenet_sketch"),
    "caltech101": lambda folder, split, transform: _image_folder(folder, transform),
    "eurosat": lambda folder, split, transform: _image_folder(folder, transform),
    "cifar10": _cifar(["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)], "labels"),
    "cifar100": _cifar(["test", "train"], "fine_labels"),
    "stl10": _stl10,
    "flowers": _flowers,
    "dtd": _torchvision("DTD", {"test": "test", "train": "train"}),
    "pets": _torchvision("OxfordIIITPet", {"test": "test", "train": "trainval"}, target_types="category"),
    "cars": _torchvision("StanfordCars", {"test": "test", "train": "train"}),
    "fgvc_aircraft": _torchvision("FGVCAircraft", {"test": "test", "train": "trainval"}, annotation_level="variant"),
    "pcam": _torchvision("PCAM", {"test": "test", "train": "train"}),
}
