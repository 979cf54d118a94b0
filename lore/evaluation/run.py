"""`lore eval`: load a model (or an exported/fine-tuned one), build its head, run the suite, write the report."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from ..data.images import build_dataset, check_same_classes, read_class_list, dataset_classnames, probe_subset, split_disjoint
from ..data.specs import is_image_folder
from ..devices import resolve_device
from ..models.build import BuiltModel, build_model, class_embeddings, zero_shot_head
from ..models.model_card import check_card_sources
from ..data.unreadable import UNREADABLE_LIST, UnreadableLog
from ..files import refuse_symlink
from ..models.encoders import ImageEncoder
from ..provenance import dataset_fingerprint, provenance
from ..models.export import is_export_folder, load_export_folder
from ..validation import looks_like_path
from ..models.families import claims_by_name
from ..models.model_card import write_model_card
from .config import EvalConfig
from .linear_head import fit_linear_head
from .report import write_report
from .suite import EvalSettings, evaluate


def settings_of(config: EvalConfig) -> EvalSettings:
    """The `EvalSettings` an (already validated) `EvalConfig` asks for."""
    return EvalSettings(
        eps=config.eps_list, attacks=config.attack_list, n_iter=config.n_iter, restarts=config.restarts,
        n_targets=config.n_targets, square_queries=config.square_queries, noise_sigmas=config.sigma_list,
        corruptions=config.corruption_list, batch_size=config.batch_size, seed=config.seed,
    )


def _load(config: EvalConfig, device: torch.device) -> BuiltModel:
    return load_model(config.model, config.pretrained, config.image_size, cache_dir=config.cache_dir,
                      seed=config.seed, device=device, allow_missing=config.allow_missing)


def load_model(model: str, pretrained: Optional[str], image_size: Optional[int], *, cache_dir: str, seed: int,
               device: torch.device, allow_missing: bool = False) -> BuiltModel:
    """Whatever `lore eval --model` accepts: a model name (+ pretrained tag), an export folder, or a run folder.

    Raises:
        FileNotFoundError: a path that does not exist, or a run folder without its export (names its status).
    """
    if claims_by_name(model):  # a name a model family claims (hf:, timm:, local-dir:, ...): it checks its own path
        return build_model(model, pretrained, image_size, cache_dir=Path(cache_dir).expanduser(), seed=seed, device=device,
                           allow_missing=allow_missing)
    path = Path(model)
    if looks_like_path(model) and not path.exists():
        raise FileNotFoundError(f"model {model!r}: no such file or folder")
    if _is_run_folder(path):
        status = _run_status(path)
        if status != "finished":
            raise ValueError(f"model {model!r}: the run folder's last run did not finish ({status}), so its export/ "
                             f"is an earlier run's; finish it with `lore train --resume --output {model}`, or pass "
                             f"{path / 'export'} to evaluate that earlier export")
        check_card_sources(path)  # its model card is written from the run's records after the evaluation: checked before
        path = path / "export"
    elif path.is_dir() and (path / "export").is_dir():
        path = path / "export"
    elif path.is_dir() and (path / "config.json").is_file() and (path / "metrics.jsonl").is_file():
        state = _run_status(path)
        raise FileNotFoundError(f"model {model!r} is a `lore train` run folder without an export (run status: "
                                f"{state}); finish it with `lore train --resume --output {model}` first")
    if is_export_folder(path):
        return load_export_folder(path, image_size, cache_dir=Path(cache_dir).expanduser(), seed=seed, device=device)
    if path.is_dir():
        raise FileNotFoundError(f"model {model!r} is a folder but neither an export (encoder.json or "
                                "open_clip_config.json) nor a `lore train` run folder")
    return build_model(model, pretrained, image_size, cache_dir=Path(cache_dir).expanduser(),
                       seed=seed, device=device)


def _run_status(run: Path) -> str:
    """A `lore train` run folder's status as its summary.json records it ("finished", "interrupted at step S of T"),
    or "still running or killed" when it has none."""
    summary = run / "summary.json"
    if not summary.is_file():
        return "still running or killed"
    try:
        record = json.loads(summary.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "summary.json unreadable"
    if not isinstance(record, dict):
        return "summary.json unreadable"
    status = str(record.get("status", "unknown"))
    if status == "interrupted":
        status += f" at step {record.get('step')} of {record.get('total_steps')}"
    return status


#: share of a folder used whole (no train/test split of its own) that fits a linear probe; the rest is scored
HEAD_SHARE = 0.5


def linear_head_data(config: EvalConfig, image_size: int, test_set):
    """(data the linear probe is fitted on, data that is scored, a description of the former).

    The probe never sees the scored images: a dataset with splits gives its train split (or `--head-data`'s);
    an image folder, which is used whole, is split in two disjoint seeded parts when it is also the head data
    (`HEAD_SHARE` fits the probe, the rest is scored).
    """
    head_spec = config.head_data or config.data
    if is_image_folder(config.data) and _same_data(head_spec, config.data):
        head_part, scored = split_disjoint(test_set, HEAD_SHARE, config.seed)
        return head_part, scored, (f"{HEAD_SHARE:.0%} of {config.data}, disjoint from the {len(scored)} images "
                                   f"that are scored (seed {config.seed})")
    head_set = build_dataset(head_spec, image_size, split="train", seed=config.seed,
                             classes=_classes(config) if is_image_folder(head_spec) else None)
    split = "" if is_image_folder(head_spec) else "'s train split"
    return head_set, test_set, f"{head_spec}{split}"


def _classes(config: EvalConfig) -> Optional[list[str]]:
    """The class folders `--classes` keeps (None: every folder)."""
    return read_class_list(config.classes) if config.classes else None


def _same_data(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def run_evaluation(config: EvalConfig) -> dict:
    """Evaluates the configured model and writes its report into `config.output`; returns the report."""
    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:  # --workers threads decode images
        return _run_evaluation(config, pool)


#: what `lore eval` writes into --output, and into a run folder's export/ (the card and its report)
EVAL_WRITES = ("report.json", "report.md", "robust_accuracy.png", UNREADABLE_LIST)
CARD_WRITES = ("export/README.md", "export/evaluation.json")


def _run_evaluation(config: EvalConfig, pool: ThreadPoolExecutor) -> dict:
    for name in EVAL_WRITES:  # a link planted where the report goes is refused before anything is evaluated
        refuse_symlink(Path(config.output) / name)
    if _is_run_folder(Path(config.model)):
        for name in CARD_WRITES:
            refuse_symlink(Path(config.model) / name)
    device = resolve_device(config.device)
    settings = settings_of(config)
    built = _load(config, device)
    Path(config.output).mkdir(parents=True, exist_ok=True)
    unreadable = UnreadableLog(Path(config.output) / UNREADABLE_LIST) if config.skip_unreadable else None
    encoder: ImageEncoder = built.encoder.eval().requires_grad_(False)
    test_set = build_dataset(config.data, built.image_size, split="test", seed=config.seed, classes=_classes(config))
    classnames = dataset_classnames(test_set)
    text_embeddings = None
    if built.clip is not None and classnames:
        if config.head_data is not None:
            raise ValueError(f"head_data {config.head_data!r} does not apply: {config.model} has a text tower, so it is "
                             "scored zero-shot from the class names (drop --head-data)")
        text_embeddings = class_embeddings(built, classnames)
        head = zero_shot_head(built, text_embeddings)
        head_kind = "zero-shot"
    else:
        head_set, test_set, head_source = linear_head_data(config, built.image_size, test_set)
        check_same_classes(head_set, test_set, f"head data {head_source}", f"evaluation data {config.data}")
        head_images, head_labels = probe_subset(head_set, config.head_samples, config.seed + 5, workers_pool=pool,
                                                on_unreadable=unreadable)
        with torch.no_grad():
            features = torch.cat([encoder(head_images[i:i + 256].to(device)) for i in range(0, len(head_images), 256)])
        head = fit_linear_head(features, head_labels.to(device), num_classes=len(classnames) if classnames else None)
        head_kind = f"linear probe (fitted on the clean features of {len(head_labels)} images: {head_source})"
    images, labels = probe_subset(test_set, config.samples, config.seed, workers_pool=pool, on_unreadable=unreadable)
    images, labels = images.to(device), labels.to(device)
    classifier = torch.nn.Sequential(encoder, head).eval()
    report = evaluate(classifier, images, labels, settings, embed=encoder,
                      class_embeddings=text_embeddings).as_dict()  # evaluation.json: the suite's report, then the run's
    report["model"] = config.model
    report["head"] = head_kind
    if unreadable is not None:
        report["unreadable_images"] = list(unreadable.seen)
        if unreadable.count:
            report["warnings"] = [*report["warnings"], f"{unreadable.count} undecodable image(s) were replaced "
                                  f"by the next decodable one (listed in {UNREADABLE_LIST})"]
    report["config"] = asdict(config)
    report["provenance"] = provenance(model=encoder, device=str(device),
                                      data={"spec": config.data, **dataset_fingerprint(test_set)})
    write_report(report, config.output, name=Path(config.model).name or config.model)
    if _is_run_folder(Path(config.model)):  # a finished run (load_model refused any other): its card shows this
        write_model_card(config.model, report)
    return report


def _is_run_folder(path: Path) -> bool:
    """Whether `path` is a `lore train` run folder with an export."""
    return path.is_dir() and (path / "export").is_dir() and (path / "config.json").is_file()
