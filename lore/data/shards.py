"""webdataset tar shards as training data: `--data wds:PATTERN` (e.g. `shards/{0000..0099}.tar`).

Shards are the format img2dataset writes and open_clip trains from: uncompressed tar files whose members are
grouped into samples by key (`000123.jpg`, `000123.txt`, `000123.cls`, ... share the key `000123`; webdataset's
own `base_plus_ext` rule). A sample needs one image (`IMAGE_EXTENSIONS`: jpg, png, webp, bmp, gif, tiff, ...);
its label is its `cls` member, a non-negative decimal integer, when there is one, else -1 (unlabelled: fine for
FARE and LORE, which never read labels; supervised methods refuse it). A `cls` member that is not such an integer,
or a key that appears twice in one shard with the same extension, is refused naming the shard and the member; a
sample without an image is left out and listed (`without_image`, which the run lists with unreadable images).

The shards are indexed once when the run starts (the member headers only, and the small `cls` members), and
then read by random access: item i is a seek into its shard. So the run samples them exactly as it samples an
image folder — the same seeded global order, split across `torchrun` ranks without repeating or dropping a
sample, DataLoader workers decoding in parallel, an undecodable image skipped and listed, and `--resume`
continuing at the exact batch of the checkpoint (the granularity is one batch, finer than a shard). Shards must
be local files (a path pattern, e.g. on a mounted file system); `pipe:` and URL streams are refused, because
random access needs a seekable file.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from .specs import IMAGE_EXTENSIONS, SHARD_PREFIX, UnreadableImageError

#: the largest class id a `cls` member may hold (int64, as the labels tensor stores it)
MAX_CLASS = 2**63 - 1


@dataclass(frozen=True)
class _Sample:
    shard: int  # index into `ShardImages.shards`
    key: str
    extension: str  # of the image member
    offset: int  # of the image member's bytes in the shard
    size: int
    label: int


def shard_paths(spec: str) -> list[Path]:
    """The shard files of a `wds:PATTERN` spec, brace-expanded (webdataset's `expand_urls`), each checked.

    Raises:
        ValueError: a stream (`pipe:`, `http:`, ...) or a pattern naming no shard. FileNotFoundError: a
            missing shard, named.
    """
    pattern = spec[len(SHARD_PREFIX):]
    if not pattern or "://" in pattern or pattern.startswith("pipe:"):
        raise ValueError(f"data {spec!r}: wds: takes a pattern of local .tar files (e.g. wds:shards/{{0000..0099}}.tar); "
                         "streams (pipe:, URLs) cannot be read by random access")
    paths = [Path(url).expanduser() for url in expand_urls(pattern)]
    if not paths:
        raise ValueError(f"data {spec!r} names no shard")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"data {spec!r}: {len(missing)} of {len(paths)} shards are missing, e.g. {missing[0]}")
    return paths


def _index(shard: int, path: Path) -> tuple[list[_Sample], list[str]]:
    """The samples of one shard (in member order) and the sources ('shard.tar:key') of keys without an image.

    Raises:
        ValueError: a shard that is not an uncompressed tar, a `cls` member that is not a class id, or a member
            that appears twice (both named).
    """
    images: dict[str, tuple[str, int, int]] = {}
    labels: dict[str, int] = {}
    keys: dict[str, None] = {}
    seen: set[tuple[str, str]] = set()
    try:
        with tarfile.open(path, mode="r:") as tar:  # uncompressed: members are seekable in place
            for member in tar:
                if not member.isfile():
                    continue
                key, extension = base_plus_ext(member.name)
                if key is None:
                    continue
                keys.setdefault(key)
                extension = extension.lower()
                if (key, extension) in seen:
                    raise ValueError(f"shard {path}: member {member.name} appears twice (two samples share the key "
                                     f"{key!r}); give every sample its own key")
                seen.add((key, extension))
                if extension in IMAGE_EXTENSIONS and key not in images:
                    images[key] = (extension, member.offset_data, member.size)
                elif extension == "cls":
                    handle = tar.extractfile(member)
                    labels[key] = _class_id(handle.read() if handle else b"", path, member.name)
    except tarfile.ReadError as error:
        raise ValueError(f"shard {path} is not an uncompressed tar file: {error}") from error
    samples = [_Sample(shard, key, *images[key], labels.get(key, -1)) for key in keys if key in images]
    return samples, [f"{path}:{key}" for key in keys if key not in images]


def _class_id(raw: bytes, path: Path, member: str) -> int:
    """A `cls` member's class id: ASCII decimal digits (surrounding whitespace allowed), at most `MAX_CLASS`."""
    text = raw.decode("utf-8", "replace").strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_CLASS:
        raise ValueError(f"shard {path}: member {member} holds {text[:40]!r}, not a class id (a non-negative decimal "
                         "integer, as img2dataset writes it)")
    return int(text)


class ShardImages(Dataset):
    """Random access into webdataset shards: item i -> (image [3, S, S] in [0, 1], label, i).

    Args:
        spec: "wds:PATTERN".
        transform: PIL image -> tensor (the folders' resize and centre crop).

    Attributes:
        shards: the shard files, in pattern order.
        classnames: empty (shards carry class ids, not names; zero-shot heads and probes use --probe-data's).
        without_image: the samples ('shard.tar:key') that had no image member and were left out.
    """

    classnames: tuple[str, ...] = ()

    def __init__(self, spec: str, transform: Callable) -> None:
        self.spec, self.transform = spec, transform
        self.shards = shard_paths(spec)
        self.samples_index: list[_Sample] = []
        self.without_image: list[str] = []
        for i, path in enumerate(self.shards):
            samples, without = _index(i, path)
            self.samples_index += samples
            self.without_image += without
        if not self.samples_index:
            raise ValueError(f"data {spec!r}: its {len(self.shards)} shard(s) hold no sample with an image "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        self._handles: dict[int, io.BufferedReader] = {}  # per process (each DataLoader worker opens its own)

    def __len__(self) -> int:
        return len(self.samples_index)

    @property
    def labels(self) -> torch.Tensor:
        """[N] int64 class ids (-1: unlabelled)."""
        return torch.tensor([s.label for s in self.samples_index], dtype=torch.long)

    def source(self, index: int) -> str:
        """'shard.tar:key.ext' of item `index`."""
        sample = self.samples_index[index]
        return f"{self.shards[sample.shard]}:{sample.key}.{sample.extension}"

    def _read(self, sample: _Sample) -> bytes:
        handle = self._handles.get(sample.shard)
        if handle is None:
            handle = self._handles[sample.shard] = open(self.shards[sample.shard], "rb")
        handle.seek(sample.offset)
        return handle.read(sample.size)

    def __getitem__(self, index: int):
        from PIL import Image

        sample = self.samples_index[index]
        try:
            with Image.open(io.BytesIO(self._read(sample))) as image:
                pixels = self.transform(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:  # PIL: truncated / unidentified / broken bytes
            raise UnreadableImageError(f"image {self.source(index)} cannot be decoded: {error}") from error
        return pixels, sample.label, index

    def __getstate__(self) -> dict:  # a worker process opens its own file handles
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


__all__ = ["IMAGE_EXTENSIONS", "ShardImages", "shard_paths"]
