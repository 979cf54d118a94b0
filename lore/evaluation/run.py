"""`lore eval`: load a model (or an exported/fine-tuned one), build its head, run the suite, write the report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..config import parse_eps
from ..data import build_dataset, dataset_classnames, probe_subset
from ..encoders import ImageEncoder
from ..export import load_exported
from ..heads import ZeroShotHead, class_text_embeddings
from ..models import BuiltModel, build_model
from .linear_head import fit_linear_head
from .report import write_report
from .suite import EvalSettings, evaluate


@dataclass
class EvalConfig:
    """What `lore eval` evaluates and how (flags of the same names)."""

    model: str = field(default="digits-cnn", metadata={"help": "as in `lore train --model`, or an export folder / run folder"})
    pretrained: Optional[str] = field(default=None, metadata={"help": "open_clip tag or weights file"})
    image_size: Optional[int] = field(default=None, metadata={"help": "input resolution (default: the model's)"})
    data: str = field(default="digits", metadata={"help": "'digits', an ImageFolder directory, or 'torchvision:NAME:ROOT'"})
    head_data: Optional[str] = field(default=None, metadata={"help": "training data for the linear head of non-CLIP models (default: --data's train split)"})
    n_samples: int = field(default=500, metadata={"help": "evaluation images (a fixed random subset)"})
    batch_size: int = field(default=128, metadata={"help": "images per attack batch"})
    attacks: str = field(default="apgd-ce,apgd-t", metadata={"help": "comma list of apgd-ce, apgd-t (empty: none)"})
    eps: str = field(default="1/255,2/255,4/255,8/255", metadata={"help": "comma list of l_inf radii"})
    n_iter: int = field(default=100, metadata={"help": "APGD iterations"})
    restarts: int = field(default=1, metadata={"help": "APGD restarts"})
    n_targets: int = field(default=9, metadata={"help": "APGD-DLR-T target classes"})
    square_queries: int = field(default=0, metadata={"help": "Square attack query budget per image (0: skip)"})
    noise_sigmas: str = field(default="", metadata={"help": "comma list of Gaussian noise std (pixel units)"})
    corruptions: str = field(default="", metadata={"help": "comma list of noise, blur, jpeg, brightness, contrast ('all' for all)"})
    seed: int = field(default=0, metadata={"help": "seed of the subset, the attacks and the noise"})
    output: str = field(default="runs/eval", metadata={"help": "folder for report.json, report.md, robust_accuracy.png"})
    cache_dir: str = field(default="~/.cache/lore", metadata={"help": "cache of built reference models"})
    device: str = field(default="", metadata={"help": "cpu, cuda, cuda:N (default: cuda if available)"})

    def settings(self) -> EvalSettings:
        from .corruptions import CORRUPTIONS

        corruptions = sorted(CORRUPTIONS) if self.corruptions == "all" else _split(self.corruptions)
        return EvalSettings(
            eps=[parse_eps(e) for e in _split(self.eps)], attacks=_split(self.attacks), n_iter=self.n_iter,
            restarts=self.restarts, n_targets=self.n_targets, square_queries=self.square_queries,
            noise_sigmas=[float(s) for s in _split(self.noise_sigmas)], corruptions=corruptions,
            batch_size=self.batch_size, seed=self.seed,
        )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _load(config: EvalConfig, device: torch.device) -> BuiltModel:
    path = Path(config.model)
    if path.is_dir() and (path / "export").is_dir():
        path = path / "export"
    if path.is_dir() and (path / "open_clip_config.json").is_file():
        return build_model(f"local-dir:{path}", None, config.image_size, cache_dir=Path(config.cache_dir).expanduser(),
                           seed=config.seed, device=device)
    if path.is_dir() and (path / "clip.safetensors").is_file():
        from ..digits_clip import DigitsCLIP, digits_tokenizer
        from ..encoders import load_state_file

        clip = DigitsCLIP()
        clip.load_state_dict(load_state_file(path / "clip.safetensors"))
        return BuiltModel(clip.visual.to(device), 16, clip.to(device), digits_tokenizer(), kind="digits-clip")
    if path.is_dir() and (path / "encoder.json").is_file():
        encoder = load_exported(path, device=device)
        size = config.image_size or json.loads((path / "encoder.json").read_text())["image_size"]
        return BuiltModel(encoder, size, kind="export")
    return build_model(config.model, config.pretrained, config.image_size, cache_dir=Path(config.cache_dir).expanduser(),
                       seed=config.seed, device=device)


def run_evaluation(config: EvalConfig) -> dict:
    """Evaluates the configured model and writes its report into `config.output`; returns the report."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = config.settings()
    built = _load(config, device)
    encoder: ImageEncoder = built.encoder.eval().requires_grad_(False)
    test_set = build_dataset(config.data, built.image_size, split="test", seed=config.seed)
    images, labels = probe_subset(test_set, config.n_samples, config.seed)
    images, labels = images.to(device), labels.to(device)
    classnames = dataset_classnames(test_set)
    class_embeddings = None
    if built.clip is not None and classnames:
        templates = ["a photo of the digit {}."] if built.kind == "digits-clip" else ["a photo of a {}.", "a photo of the {}."]
        class_embeddings = class_text_embeddings(built.clip, built.tokenizer, list(classnames), templates)
        head = ZeroShotHead(class_embeddings, scale=100.0)
        head_kind = "zero-shot"
    else:
        head_set = build_dataset(config.head_data or config.data, built.image_size, split="train", seed=config.seed)
        head_images, head_labels = probe_subset(head_set, 2000, config.seed + 5)
        with torch.no_grad():
            features = torch.cat([encoder(head_images[i:i + 256].to(device)) for i in range(0, len(head_images), 256)])
        head = fit_linear_head(features, head_labels.to(device))
        head_kind = "linear (fitted on clean features)"
    classifier = torch.nn.Sequential(encoder, head).eval()
    report = evaluate(classifier, images, labels, settings, embed=encoder, class_embeddings=class_embeddings)
    report["model"] = config.model
    report["head"] = head_kind
    report["config"] = asdict(config)
    write_report(report, config.output, name=Path(config.model).name or config.model)
    return report
