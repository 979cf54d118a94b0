"""Images and their metadata: the bundled digits, image folders and torchvision datasets
(`build_dataset`), the paper's benchmark datasets in their release layouts (`build_benchmark_dataset`),
and zero-shot class names and prompt templates (`zero_shot_metadata`, `PROMPT_TEMPLATES`).

Every dataset yields (image [3, H, W] in [0, 1], label, index). Public names are imported lazily (PEP 562);
the metadata modules (`zero_shot`, `release_files`, `imagenet`) need no torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_HOMES = {
    "DIGIT_NAMES": ".digits",
    "Digits": ".digits",
    "load_digits_images": ".digits",
    "IndexedImages": ".images",
    "TensorImages": ".images",
    "UnreadableImageError": ".images",
    "build_dataset": ".images",
    "dataset_classnames": ".images",
    "load_batch": ".images",
    "probe_subset": ".images",
    "read_class_list": ".images",
    "build_benchmark_dataset": ".benchmark",
    "BenchmarkDataMissing": ".release_files",
    "LAYOUTS": ".release_files",
    "PAPER_DATASETS": ".zero_shot",
    "PROMPT_TEMPLATES": ".zero_shot",
    "ZERO_SHOT_DATASETS": ".zero_shot",
    "parse_benchmark": ".zero_shot",
    "prompt_templates": ".zero_shot",
    "zero_shot_metadata": ".zero_shot",
}

__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
