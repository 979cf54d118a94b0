"""ImageNet-1k's class metadata as the field uses it, without the network (torch-free).

WordNet ids come from timm, class names and prompt templates from open_clip (OpenAI's); both are imported
only when a function is called.
"""

from __future__ import annotations

from functools import lru_cache


def imagenet_classnames() -> list[str]:
    """open_clip's 1000 OpenAI ImageNet class names, in class-index (sorted WordNet id) order."""
    import open_clip

    return list(open_clip.IMAGENET_CLASSNAMES)


def imagenet_templates() -> list[str]:
    """open_clip's 80 OpenAI ImageNet templates, as "{}" format strings."""
    import open_clip

    return [template("{}") for template in open_clip.OPENAI_IMAGENET_TEMPLATES]


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (timm ships them)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())
