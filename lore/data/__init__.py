"""Images and their metadata: the bundled digits, image folders and torchvision datasets
(`build_dataset`), the paper's benchmark datasets in their release layouts (`build_benchmark_dataset`),
and zero-shot class names and prompt templates (`zero_shot_metadata`, `PROMPT_TEMPLATES`).

Every dataset yields (image [3, H, W] in [0, 1], label, index). Public names are imported on first use
(PEP 562); the metadata modules (`zero_shot`, `release_files`, `imagenet`) need no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BenchmarkDataMissing", "DIGIT_NAMES", "DigitSplits", "Digits", "IndexedImages", "LAYOUTS", "PAPER_DATASETS",
    "PROMPT_TEMPLATES", "TensorImages", "UnreadableImageError", "ZERO_SHOT_DATASETS", "build_benchmark_dataset",
    "build_dataset", "dataset_classnames", "load_batch", "load_digits_images", "parse_benchmark", "probe_subset",
    "prompt_templates", "read_class_list", "zero_shot_metadata",
]


def __getattr__(name: str) -> Any:
    if name in ("DIGIT_NAMES", "DigitSplits", "Digits", "load_digits_images"):
        from . import digits as home
    elif name in ("IndexedImages", "TensorImages", "UnreadableImageError", "build_dataset", "dataset_classnames",
                  "load_batch", "probe_subset", "read_class_list"):
        from . import images as home
    elif name == "build_benchmark_dataset":
        from . import benchmark as home
    elif name in ("BenchmarkDataMissing", "LAYOUTS"):
        from . import release_files as home
    elif name in __all__:
        from . import zero_shot as home
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(home, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
