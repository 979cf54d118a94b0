"""An ImageFolder restricted to a list of class folders (ImageNet-100 out of an ImageNet tree)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torchvision.datasets import ImageFolder


class SelectedImageFolder(ImageFolder):
    """`ImageFolder` over the listed class folders only; the others are never scanned.

    Args:
        root: the folder holding one sub-folder per class.
        classes: the class folders to keep; every one must exist. Labels follow their sorted order.
        transform: applied to each PIL image.
    """

    def __init__(self, root: str, classes: Sequence[str], transform=None) -> None:
        self.wanted = sorted(classes)
        super().__init__(root, transform=transform)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        present = {entry.name for entry in Path(directory).iterdir() if entry.is_dir()}
        missing = [c for c in self.wanted if c not in present]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of the {len(self.wanted)} listed class folders are missing "
                                    f"under {directory}, e.g. {missing[:5]}")
        return list(self.wanted), {name: i for i, name in enumerate(self.wanted)}
