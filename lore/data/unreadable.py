"""The one policy for images that cannot be decoded, shared by `lore train` and `lore eval`.

With `--skip-unreadable` (the default of both) an undecodable image is replaced by the next decodable one of the
dataset (`lore.data.images.load_item`: deterministic, so every rank and every resume choose alike), a warning
names it once, and `UnreadableLog` lists it in OUTPUT/unreadable_images.txt. With `--no-skip-unreadable` the
first one stops the command, naming it. Shard samples that hold no image at all are listed in the same file
(`note_without_image`), so that nothing a run leaves out goes unsaid.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Optional

from ..files import read_own_text, write_text_atomic

#: the list's file name in a run or evaluation folder
UNREADABLE_LIST = "unreadable_images.txt"
#: how a sample left out for having no image ends its line in the list
NO_IMAGE = ": no image member; left out"


class UnreadableLog:
    """Receives the messages of skipped images: warns once per image and lists each in `path` (rank 0; None
    elsewhere).

    Args:
        path: the list file, or None to only count.
        resume: keep the entries an interrupted part of the same run listed (never listed twice); otherwise a
            new list starts empty.
    """

    def __init__(self, path: Optional[Path], *, resume: bool = False) -> None:
        self.path, self.seen = path, []
        if path is not None and (path.exists() or path.is_symlink()):
            if resume:
                self.seen = [line for line in read_own_text(path).splitlines() if line]
            else:
                path.unlink()  # a new run's list starts empty (a link is removed, never followed)

    @property
    def count(self) -> int:
        """Images that could not be decoded (and were replaced)."""
        return sum(1 for line in self.seen if not line.endswith(NO_IMAGE))

    @property
    def without_image(self) -> int:
        """Shard samples left out for holding no image."""
        return len(self.seen) - self.count

    def __call__(self, message: str) -> None:
        if message in self.seen:
            return
        warnings.warn(f"skipping an unreadable image (replaced by the next readable one): {message}", stacklevel=2)
        self._add([message])

    def note_without_image(self, sources: Iterable[str]) -> None:
        """Lists samples that were left out because they hold no image member (webdataset shards)."""
        new = [f"{source}{NO_IMAGE}" for source in sources]
        new = [line for line in new if line not in self.seen]
        if new:
            warnings.warn(f"{len(new)} shard sample(s) hold no image and are left out, e.g. {new[0]}"
                          + (f" (all listed in {self.path})" if self.path is not None else ""), stacklevel=2)
            self._add(new)

    def _add(self, lines: list[str]) -> None:
        self.seen += lines
        if self.path is not None:  # rewritten whole, atomically: the list stays short (it lists failures)
            write_text_atomic(self.path, "".join(line + "\n" for line in self.seen))


__all__ = ["UNREADABLE_LIST", "UnreadableLog"]
