"""What a `--data` spec names, without torch: the config's checks and the engine read it alike."""

from __future__ import annotations

class UnreadableImageError(OSError):
    """An image file (or a shard's image member) that cannot be decoded (truncated, garbage, not an image); the
    message names it."""


#: share of a `--data` image folder held out for the training probe when no `--probe-data` is given (at most
#: `--probe-size` images); training never sees those images
PROBE_SHARE = 0.2


#: the image members a shard sample may hold (PIL decodes each; webdataset's own image extensions and BMP, GIF, TIFF)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pbm", "pnm")


#: the `--data` prefix of webdataset shards (`lore.data.shards`)
SHARD_PREFIX = "wds:"


def is_shard_spec(spec: str) -> bool:
    """Whether a data spec names webdataset shards ("wds:PATTERN")."""
    return spec.startswith(SHARD_PREFIX)


#: what `--data` accepts, for messages
DATA_FORMS = ("'digits', 'torchvision:NAME:ROOT' (a dataset already on disk), 'wds:PATTERN' (local webdataset tar "
              "shards) or an image folder")


def is_image_folder(spec: str) -> bool:
    """Whether a data spec names an image folder, which has no train/test split of its own (`build_dataset`
    returns all of it for either split): not "digits", not "torchvision:NAME:ROOT", not "wds:PATTERN"."""
    return spec != "digits" and not spec.startswith("torchvision:") and not is_shard_spec(spec)
