"""Images and their metadata: the bundled digits, image folders and torchvision datasets
(`build_dataset`), the paper's benchmark datasets in their release layouts (`build_benchmark_dataset`),
and zero-shot class names and prompt templates (`zero_shot_metadata`, `PROMPT_TEMPLATES`).

Every dataset yields (image [3, H, W] in [0, 1], label, index). Public names are imported on first use
(PEP 562); the metadata modules (`zero_shot`, `release_files`, `imagenet`) need no torch.
"""

from __future__ import annotations

from ..plugins import lazy_exports

#: every public name and the module that defines it, imported on first use (`lore.plugins.lazy_exports`)
EXPORTS = {
    "DIGIT_NAMES": "lore.data.digits:DIGIT_NAMES",
    "DigitSplits": "lore.data.digits:DigitSplits",
    "Digits": "lore.data.digits:Digits",
    "load_digits_images": "lore.data.digits:load_digits_images",
    "IndexedImages": "lore.data.images:IndexedImages",
    "TensorImages": "lore.data.images:TensorImages",
    "build_dataset": "lore.data.images:build_dataset",
    "dataset_classnames": "lore.data.images:dataset_classnames",
    "load_batch": "lore.data.images:load_batch",
    "probe_subset": "lore.data.images:probe_subset",
    "read_class_list": "lore.data.images:read_class_list",
    "UnreadableImageError": "lore.data.specs:UnreadableImageError",
    "build_benchmark_dataset": "lore.data.benchmark:build_benchmark_dataset",
    "BenchmarkDataMissing": "lore.data.release_files:BenchmarkDataMissing",
    "LAYOUTS": "lore.data.release_files:LAYOUTS",
    "PAPER_DATASETS": "lore.data.zero_shot:PAPER_DATASETS",
    "PROMPT_TEMPLATES": "lore.data.zero_shot:PROMPT_TEMPLATES",
    "ZERO_SHOT_DATASETS": "lore.data.zero_shot:ZERO_SHOT_DATASETS",
    "parse_benchmark": "lore.data.zero_shot:parse_benchmark",
    "prompt_templates": "lore.data.zero_shot:prompt_templates",
    "zero_shot_metadata": "lore.data.zero_shot:zero_shot_metadata",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), EXPORTS)
