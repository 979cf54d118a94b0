"""Class-folder datasets: an ImageFolder restricted to a list of class folders (ImageNet-100 out of an ImageNet
tree), and the link check every class-folder dataset passes before it is scanned."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from .imagenet import imagenet_classnames, imagenet_wnids

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


def check_links(root: str | Path) -> None:
    """Refuses symbolic links that would multiply or mislabel images of a class-folder dataset.

    torchvision's ImageFolder follows links: a directory link inside a class folder (`ln -s .` loops; a link
    to another class adds its images under this label) is refused, as is a file reachable twice (two links
    to one image, a link to an image of another class, or a hard link: two names of one inode). Links to files
    elsewhere, each reached once, are fine (datasets assembled from links on shared storage).

    Raises:
        ValueError: naming the link and what it points to.
    """
    root = Path(root)
    seen: dict[tuple[int, int], Path] = {}
    for directory, subdirs, files in os.walk(root, followlinks=False):
        for name in subdirs:
            path = Path(directory) / name
            if path.is_symlink():
                raise ValueError(f"{path} is a link to the folder {os.readlink(path)}: its images would be read under "
                                 "another label or more than once (a loop repeats them without end); replace it by "
                                 "the folder itself")
        for name in files:
            path = Path(directory) / name
            try:
                status = path.stat()  # follows a symbolic link; a hard link shares its inode
            except OSError:
                continue  # a dangling link: the reader names it as an unreadable image
            inode = (status.st_dev, status.st_ino)
            if inode in seen:
                how = "a hard link to" if not (path.is_symlink() or seen[inode].is_symlink()) else "the same file as"
                raise ValueError(f"{path} is {how} {seen[inode]} ({path.resolve()}): it would count twice, possibly "
                                 "under two labels")
            seen[inode] = path


def class_folder_dataset(spec: str, classes: Optional[Sequence[str]], transform) -> ImageFolder:
    """The image folder `spec` (one sub-folder per class; only `classes` when given), links checked, with at least
    2 classes; its `classnames` attribute holds `folder_classnames` of its class folders."""
    folder = Path(spec)
    check_links(folder)
    try:
        base = ImageFolder(str(folder), transform=transform) if classes is None else \
            SelectedImageFolder(str(folder), classes, transform=transform)
    except FileNotFoundError as error:  # torchvision: no class folders / no images in them
        raise ValueError(f"image folder {spec}: {error}") from error
    if len(base.classes) < 2:
        raise ValueError(f"image folder {spec} has {len(base.classes)} class folder(s) ({base.classes}); "
                         "classification needs at least 2 (one sub-folder per class)")
    base.classnames = folder_classnames(base.classes)
    return base


def folder_classnames(folders: Sequence[str]) -> tuple[str, ...]:
    """Class names of class folders: ImageNet's real names when every folder is a WordNet id, else the folder
    names with "_" read as a space."""
    if folders and all(len(f) == 9 and f[0] == "n" and f[1:].isdigit() for f in folders):
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        if all(f in index for f in folders):
            names = imagenet_classnames()
            return tuple(names[index[f]] for f in folders)
    return tuple(f.replace("_", " ") for f in folders)
