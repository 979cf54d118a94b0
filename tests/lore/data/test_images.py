"""Data: digits, ImageFolder trees and torchvision datasets already on disk; deterministic epoch order."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from lore.data.images import batches_per_epoch, build_dataset, epoch_order, load_batch
from lore import load_digits_images


def write_mnist(root, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """MNIST's idx files (the format torchvision reads), written from real digits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), 28, 28) + images.astype(np.uint8).tobytes())
    with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def test_torchvision_dataset_on_disk_is_read_without_download(tmp_path):
    digits = load_digits_images(28)
    pixels = (digits.images[:, 0].numpy() * 255).round()
    labels = digits.labels.numpy()
    write_mnist(tmp_path, pixels[:100], labels[:100], "train")
    write_mnist(tmp_path, pixels[100:150], labels[100:150], "t10k")
    train = build_dataset(f"torchvision:MNIST:{tmp_path}", 16, split="train")
    test = build_dataset(f"torchvision:MNIST:{tmp_path}", 16, split="test")
    assert (len(train), len(test)) == (100, 50)
    images, batch_labels, indices = load_batch(train, torch.tensor([0, 5, 7]))
    assert images.shape == (3, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert batch_labels.tolist() == labels[[0, 5, 7]].tolist()
    assert train.classnames[0].startswith("0")
    with pytest.raises(FileNotFoundError, match="no downloads"):
        build_dataset(f"torchvision:MNIST:{tmp_path / 'nowhere'}", 16)
    with pytest.raises(ValueError, match="torchvision:NAME:ROOT"):
        build_dataset("torchvision:MNIST", 16)


def test_image_folder_and_bad_specs(digit_folders):
    train, _ = digit_folders
    dataset = build_dataset(str(train), 24)
    images, labels, _ = load_batch(dataset, torch.arange(4))
    assert images.shape == (4, 3, 24, 24)
    assert set(dataset.classnames) <= {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    with pytest.raises(FileNotFoundError, match="is none"):
        build_dataset(str(train / "missing"), 24)


def test_epoch_order_is_a_deterministic_permutation():
    a, b, c = epoch_order(50, 3, 0), epoch_order(50, 3, 0), epoch_order(50, 4, 0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(a.tolist()) == list(range(50))
    assert batches_per_epoch(50, 16) == 3
    with pytest.raises(ValueError, match="fewer than one global batch"):
        batches_per_epoch(10, 16)
