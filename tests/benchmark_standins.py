"""Tiny stand-ins of the paper's 14 benchmark datasets, written in the exact on-disk formats of their releases.

The pixels are real images (scikit-learn's handwritten digits, upscaled to RGB); labels are the digit
modulo the number of classes used. Each writer returns the labels it wrote, in the order the release
lists its test split, so tests can compare what the loaders read against what was written.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
IMAGENET_WNIDS = {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark"}


def digit_pixels(count: int, side: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` digit images as uint8 RGB [count, side, side, 3] and their digits [count]."""
    digits = load_digits()
    index = (np.arange(count) + offset) % len(digits.target)
    gray = (digits.images[index] / 16.0 * 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(g).resize((side, side), Image.NEAREST)) for g in gray])
    return np.repeat(big[..., None], 3, axis=3), digits.target[index]


def _jpeg(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


def write_cifar10(root: Path, count: int = 24) -> list[int]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    pixels, digits = digit_pixels(count, 32)
    data = pixels.transpose(0, 3, 1, 2).reshape(count, -1)
    labels = [int(d) for d in digits]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": labels, "data": data,
                     "filenames": [f"{i}.png" for i in range(count)]}, f)
    train_pixels, train_digits = digit_pixels(count, 32, offset=500)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"labels": [int(d) for d in train_digits], "data": train_pixels.transpose(0, 3, 1, 2).reshape(count, -1)}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_NAMES, "num_vis": 3072}, f)
    return labels


def write_cifar100(root: Path, count: int = 24) -> list[int]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    pixels, digits = digit_pixels(count, 32)
    labels = [int(d) * 10 for d in digits]
    for name in ("test", "train"):
        with open(folder / name, "wb") as f:
            pickle.dump({"fine_labels": labels, "coarse_labels": [0] * count,
                         "data": pixels.transpose(0, 3, 1, 2).reshape(count, -1)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(99)] + ["aquarium_fish"]}, f)
    return labels


def write_stl10(root: Path, count: int = 20) -> list[int]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    labels = []
    for split, offset in (("test", 0), ("train", 300)):
        pixels, digits = digit_pixels(count, 96, offset)
        pixels.transpose(0, 3, 2, 1).astype(np.uint8).tofile(folder / f"{split}_X.bin")  # channel-major, column-major
        (digits.astype(np.uint8) + 1).tofile(folder / f"{split}_y.bin")  # labels stored 1..10
        if split == "test":
            labels = [int(d) for d in digits]
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    return labels


def write_imagenet_style(folder: Path, wnids=tuple(IMAGENET_WNIDS), per_class: int = 4, offset: int = 0) -> list[int]:
    """Class folders named by WordNet id (ImageNet val/train, ImageNet-R, ImageNet-Sketch)."""
    labels = []
    for label, wnid in enumerate(sorted(wnids)):
        pixels, _ = digit_pixels(per_class, 40, offset + 7 * label)
        for i in range(per_class):
            _jpeg(folder / wnid / f"{wnid}_{i}.JPEG", pixels[i])
            labels.append(label)
    return labels


def write_flowers(root: Path, count: int = 12) -> list[int]:
    from scipy.io import savemat

    folder = root / "flowers-102"
    pixels, digits = digit_pixels(count, 40)
    image_labels = [int(d) % 5 + 1 for d in digits]  # stored 1..102
    for i in range(count):
        _jpeg(folder / "jpg" / f"image_{i + 1:05d}.jpg", pixels[i])
    savemat(str(folder / "imagelabels.mat"), {"labels": np.array(image_labels)})
    test_ids = np.arange(1, count + 1, 2)
    savemat(str(folder / "setid.mat"), {"trnid": np.arange(2, count + 1, 2), "valid": np.array([2]), "tstid": test_ids})
    return [image_labels[i - 1] - 1 for i in test_ids]


def write_class_folders(folder: Path, classes: list[str], per_class: int = 2, suffix: str = ".jpg") -> list[int]:
    """One folder per class (EuroSAT, Caltech-101); labels follow sorted folder names."""
    labels = []
    for label, name in enumerate(sorted(classes)):
        pixels, _ = digit_pixels(per_class, 40, 3 * label)
        for i in range(per_class):
            _jpeg(folder / name / f"image_{i + 1:04d}{suffix}", pixels[i])
            labels.append(label)
    return labels


EUROSAT_FOLDERS = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake"]


def write_eurosat(root: Path) -> list[int]:
    return write_class_folders(root / "eurosat" / "2750", EUROSAT_FOLDERS)


def write_caltech101(root: Path) -> list[int]:
    from lore.data.release_files import RELEASE_FOLDERS

    categories = list(RELEASE_FOLDERS["caltech101"])  # the release's 102 folder names
    return write_class_folders(root / "caltech101" / "101_ObjectCategories", categories, per_class=1)


def write_dtd(root: Path) -> list[int]:
    folder = root / "dtd" / "dtd"
    textures = ["banded", "blotchy", "braided"]
    lines = {"test": [], "train": [], "val": []}
    labels = []
    pixels, _ = digit_pixels(9, 40)
    for t, texture in enumerate(textures):
        for i in range(3):
            name = f"{texture}/{texture}_{i:04d}.jpg"
            _jpeg(folder / "images" / name, pixels[3 * t + i])
            split = "test" if i < 2 else "train"
            lines[split].append(name)
            if split == "test":
                labels.append(t)
    for split, names in lines.items():
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        (folder / "labels" / f"{split}1.txt").write_text("\n".join(names) + ("\n" if names else ""))
    return labels


def write_pets(root: Path) -> list[int]:
    folder = root / "oxford-iiit-pet"
    breeds = ["Abyssinian", "american_bulldog", "american_pit_bull_terrier"]
    pixels, _ = digit_pixels(6, 40)
    test, trainval, labels = [], [], []
    for b, breed in enumerate(breeds):
        for i in (1, 2):
            _jpeg(folder / "images" / f"{breed}_{i}.jpg", pixels[2 * b + i - 1])
            (test if i == 1 else trainval).append(f"{breed}_{i} {b + 1} 1 1")
            if i == 1:
                labels.append(b)
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "test.txt").write_text("\n".join(test) + "\n")
    (folder / "annotations" / "trainval.txt").write_text("\n".join(trainval) + "\n")
    return labels


def write_fgvc_aircraft(root: Path) -> list[int]:
    folder = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "727-200", "737-200"]
    (folder / "images").mkdir(parents=True)
    (folder / "variants.txt").write_text("\n".join(variants) + "\n")
    pixels, _ = digit_pixels(6, 40)
    lines = {"test": [], "trainval": []}
    labels = []
    for v, variant in enumerate(variants):
        for i in range(2):
            image_id = f"{1000000 + 10 * v + i}"
            _jpeg(folder / "images" / f"{image_id}.jpg", pixels[2 * v + i])
            lines["test" if i == 0 else "trainval"].append(f"{image_id} {variant}")
            if i == 0:
                labels.append(v)
    for split, rows in lines.items():
        (folder / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    return labels


def write_cars(root: Path) -> list[int]:
    from scipy.io import savemat

    folder = root / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
    (folder / "devkit").mkdir(parents=True)
    savemat(str(folder / "devkit" / "cars_meta.mat"), {"class_names": np.array(names, dtype=object)})
    pixels, _ = digit_pixels(6, 40)
    records = {"test": [], "train": []}
    labels = []
    for c in range(3):
        for i, split in enumerate(("test", "train")):
            fname = f"{c * 2 + i + 1:05d}.jpg"
            _jpeg(folder / f"cars_{split}" / fname, pixels[2 * c + i])
            records[split].append((fname, c + 1))
            if split == "test":
                labels.append(c)
    dtype = [("fname", object), ("class", object)]
    for split, path in (("test", folder / "cars_test_annos_withlabels.mat"), ("train", folder / "devkit" / "cars_train_annos.mat")):
        savemat(str(path), {"annotations": np.array(records[split], dtype=dtype)})
    return labels


def write_pcam(root: Path, count: int = 8) -> list[int]:
    import h5py

    folder = root / "pcam"
    folder.mkdir(parents=True)
    labels = []
    for split, offset in (("test", 0), ("train", 100)):
        pixels, digits = digit_pixels(count, 96, offset)
        y = (digits % 2).astype(np.uint8)
        with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f.create_dataset("x", data=pixels)
        with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f.create_dataset("y", data=y.reshape(-1, 1, 1, 1))
        if split == "test":
            labels = [int(v) for v in y]
    return labels


WRITERS = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "stl10": write_stl10,
    "imagenet1k": lambda root: (write_imagenet_style(root / "imagenet1k" / "train", offset=50),
                                write_imagenet_style(root / "imagenet1k" / "val"))[1],
    "imagenet-r": lambda root: write_imagenet_style(root / "imagenet-r"),
    "imagenet_sketch": lambda root: write_imagenet_style(root / "imagenet_sketch" / "sketch"),
    "flowers": write_flowers,
    "eurosat": write_eurosat,
    "caltech101": write_caltech101,
    "dtd": write_dtd,
    "pets": write_pets,
    "fgvc_aircraft": write_fgvc_aircraft,
    "cars": write_cars,
    "pcam": write_pcam,
}


def write_all(root: Path) -> dict[str, list[int]]:
    """Writes every stand-in under one shared root; returns each dataset's test labels in release order."""
    return {name: writer(root) for name, writer in WRITERS.items()}
