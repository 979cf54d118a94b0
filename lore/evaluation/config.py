"""The typed configuration of `lore eval` (torch-free, so `lore --help` and argument errors stay instant)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..data.zero_shot import parse_benchmark
from ..devices import check_device
from ..units import parse_eps
from ..validation import check_field_types, check_seed_and_size
from ..vocabulary import Corruption, choices
from .attacks import attack_names



def split_list(text: str) -> list[str]:
    """"a, b,,c" -> ["a", "b", "c"]."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass
class EvalConfig:
    """What `lore eval` evaluates and how (flags of the same names). Every value is checked on construction."""

    model: str = field(default="digits-cnn", metadata={"help": "as in `lore train --model`, or an export folder / run folder"})
    pretrained: Optional[str] = field(default=None, metadata={"help": "open_clip tag or weights file"})
    image_size: Optional[int] = field(default=None, metadata={"help": "input resolution (default: the model's)"})
    allow_missing: bool = field(default=False, metadata={
        "help": "hf: models: evaluate even when the folder's weights lack entries its config names (they are random; "
                "listed in a warning); default: refuse such a folder"})
    data: str = field(default="digits", metadata={"help": "'digits', an ImageFolder directory, or 'torchvision:NAME:ROOT'"})
    classes: Optional[str] = field(default=None, metadata={
        "help": "score only these class folders of an image-folder --data (and --head-data): 'imagenet100' or a text "
                "file with one folder name per line, as `lore train --classes`"})
    head_data: Optional[str] = field(default=None, metadata={
        "help": "training data for the linear probe of encoders without a text tower (default: --data's train split; "
                "an image folder without one is split: half fits the probe, the other half is scored)"})
    n_samples: Optional[int] = field(default=None, metadata={
        "help": "evaluation images per dataset, a fixed seeded subset (default: 500; with --benchmark 1000, "
                "as RobustVLM's zero-shot evaluation); alias --samples"})
    batch_size: int = field(default=128, metadata={"help": "images per attack batch"})
    attacks: str = field(default="apgd-ce,apgd-t", metadata={
        "help": "comma list of apgd-ce, apgd-t, or attacks a plugin registered, run in order (empty: none)"})
    eps: str = field(default="1/255,2/255,4/255,8/255", metadata={"help": "comma list of l_inf radii"})
    n_iter: int = field(default=100, metadata={"help": "APGD iterations"})
    restarts: int = field(default=1, metadata={"help": "APGD restarts"})
    n_targets: int = field(default=9, metadata={"help": "APGD-DLR-T target classes (>= 1 when apgd-t runs)"})
    square_queries: int = field(default=0, metadata={"help": "Square attack query budget per image (0: skip)"})
    noise_sigmas: str = field(default="", metadata={"help": "comma list of Gaussian noise std > 0 (pixel units)"})
    corruptions: str = field(default="", metadata={"help": "comma list of noise, blur, jpeg, brightness, contrast ('all' for all)"})
    seed: int = field(default=0, metadata={"help": "seed of the subset, the attacks and the noise"})
    output: str = field(default="runs/eval", metadata={"help": "folder for report.json, report.md and the plot; alias --out"})
    benchmark: str = field(default="", metadata={
        "help": "evaluate on the paper's zero-shot benchmark instead of --data: a comma list of CLIP_benchmark names "
                "(imagenet1k, caltech101, cars, cifar10, cifar100, dtd, eurosat, fgvc_aircraft, flowers, imagenet-r, "
                "imagenet_sketch, pcam, pets, stl10) or 'paper' for all 14; --model may then be a comma list"})
    data_root: str = field(default="", metadata={"help": "with --benchmark: the folder holding the datasets "
                                                         "(layouts in docs/evaluation.md); nothing is downloaded"})
    baseline: Optional[str] = field(default=None, metadata={"help": "with --benchmark: the model the ↑/↓ differences "
                                                                     "refer to (default: the first)"})
    linear_head: Optional[str] = field(default=None, metadata={
        "help": "with --benchmark, for encoders without a text tower: a fixed head (safetensors with weight [K, D] and "
                "bias [K]; '{dataset}' is replaced by the dataset name) instead of fitting one"})
    check_data: bool = field(default=False, metadata={
        "help": "with --benchmark: list what each dataset under --data-root holds (images against the release's "
                "count, classes, problems) and exit without evaluating (2 if any is unreadable)"})
    head_samples: int = field(default=10000, metadata={"help": "train images the linear head is fitted on"})
    workers: int = field(default=8, metadata={"help": "threads decoding images"})
    skip_unreadable: bool = field(default=True, metadata={
        "help": "replace an undecodable image by the next decodable one, naming it in OUTPUT/unreadable_images.txt "
                "and the report, as `lore train` does (--no-skip-unreadable: stop at the first, naming it)"})
    cache_dir: str = field(default="~/.cache/lore", metadata={"help": "cache of built reference models"})
    device: str = field(default="", metadata={"help": "cpu, cuda, cuda:N (default: cuda if available)"})

    def __post_init__(self) -> None:
        check_field_types(self)
        check_seed_and_size(self, ("seed",))
        check_device(self.device)
        for name in ("n_samples", "batch_size", "n_iter", "restarts", "head_samples", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.square_queries < 0:
            raise ValueError(f"square_queries must be >= 0 (0 skips Square), got {self.square_queries}")
        unknown = [a for a in self.attack_list if a not in attack_names()]
        if unknown:
            raise ValueError(f"attacks: unknown {unknown}; choose from {list(attack_names())}")
        if "apgd-t" in self.attack_list and self.n_targets < 1:
            raise ValueError(f"n_targets must be >= 1 when apgd-t runs, got {self.n_targets} (drop apgd-t from --attacks instead)")
        eps = self.eps_list
        if (self.attack_list or self.square_queries) and not eps:
            raise ValueError(f"eps lists no radius ({self.eps!r}) but attacks are requested; give e.g. --eps 4/255")
        bad = [s for s in self.sigma_list if not (math.isfinite(s) and s > 0)]
        if bad:
            raise ValueError(f"noise_sigmas must be finite and > 0, got {bad}")
        bad_names = [c for c in self.corruption_list if c not in choices(Corruption)]
        if bad_names:
            raise ValueError(f"corruptions: unknown {bad_names}; choose from {list(choices(Corruption))} or 'all'")
        if self.benchmark:
            self._check_benchmark()
        elif self.data_root or self.baseline or self.linear_head or self.check_data:
            raise ValueError("data_root, baseline, linear_head and check_data belong to --benchmark; give --benchmark "
                             "NAMES too")

    def _check_benchmark(self) -> None:
        parse_benchmark(self.benchmark)
        if not self.data_root:
            raise ValueError("benchmark needs --data-root, the folder holding the datasets (see docs/evaluation.md)")
        if not Path(self.data_root).expanduser().is_dir():
            raise ValueError(f"data_root {self.data_root!r} is not a folder")
        extras = [name for name, value in (("square_queries", self.square_queries), ("noise_sigmas", self.noise_sigmas),
                                           ("corruptions", self.corruptions), ("head_data", self.head_data),
                                           ("classes", self.classes)) if value]
        if extras:
            raise ValueError(f"{', '.join(extras)} are not part of the benchmark report; run `lore eval --data ...` "
                             "per dataset for them")
        if not self.model_list:
            raise ValueError("model lists no model")

    @property
    def benchmark_list(self) -> list[str]:
        return parse_benchmark(self.benchmark) if self.benchmark else []

    @property
    def model_list(self) -> list[str]:
        """--model split at commas in benchmark mode (several models in one report), else the one model."""
        return split_list(self.model) if self.benchmark else [self.model]

    @property
    def samples(self) -> int:
        """Images per dataset: --n-samples, else 1000 in benchmark mode (RobustVLM) and 500 otherwise."""
        if self.n_samples is not None:
            return self.n_samples
        return 1000 if self.benchmark else 500

    @property
    def attack_list(self) -> list[str]:
        return split_list(self.attacks)

    @property
    def eps_list(self) -> list[float]:
        return [parse_eps(e) for e in split_list(self.eps)]

    @property
    def sigma_list(self) -> list[float]:
        try:
            return [float(s) for s in split_list(self.noise_sigmas)]
        except ValueError as error:
            raise ValueError(f"noise_sigmas must be a comma list of numbers, got {self.noise_sigmas!r}") from error

    @property
    def corruption_list(self) -> list[str]:
        return list(choices(Corruption)) if self.corruptions.strip() == "all" else split_list(self.corruptions)
