"""`lore eval --benchmark`: the paper's Table 3 evaluation over many datasets and models, resumable.

For each model and dataset: a fixed, seeded subset of `samples` test images;
the zero-shot head from the dataset's class names and templates (CLIP models)
or a linear head on clean train-split features (encoders without a text tower);
clean accuracy and the APGD-CE -> APGD-DLR-T cascade at each eps. Each
dataset's result is written to OUT/models/MODEL/DATASET.json the moment it
finishes, with the settings it was computed under; a re-run reuses finished
datasets (and refuses ones computed under other settings rather than mixing
them). Text embeddings of the class prompts are cached under the cache folder,
keyed by the text tower's weights, so models sharing a text tower (CLIP,
FARE, LORE fine-tunes of it) embed the prompts once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tqdm import tqdm

from ..data.zero_shot import PAPER_DATASETS
from ..devices import resolve_device
from ..models.build import BuiltModel
from ..provenance import provenance, weights_sha256
from ..units import format_eps
from .benchmark_data import PreparedDataset, check_data, check_datasets_present, prepare_dataset, size_warning
from .benchmark_report import write_benchmark_report
from .result_store import DatasetResult, canonical_model, reuse_result, store_result
from .run import load_model
from .suite import EvalSettings, evaluate

#: Images per dataset for robust accuracy: RobustVLM's zero-shot scripts attack 1000 per dataset (SAMPLES=1000).
DEFAULT_SAMPLES = 1000


def model_label(model: str, pretrained: Optional[str] = None) -> str:
    """A short, file-safe name for a model: a folder's name (a run's, for its export/), or NAME_TAG for a model
    name with a pretrained tag or weights file (ViT-B-32 + openai -> "ViT-B-32_openai")."""
    path = Path(model)
    if path.exists() or "/" in model or model in (".", ".."):
        path = path.expanduser().resolve()  # "..", "./", "runs/x/" name the folder they resolve to
        base = path.name if path.name != "export" else path.parent.name
    else:
        base = model if pretrained is None else f"{model}_{Path(pretrained).stem}"
    label = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in base).strip(".")
    return label or "model"  # never "", "." or "..": the label is a folder name under OUTPUT/models/


def settings_record(settings: EvalSettings, samples: int, head_samples: int, *, data_root: Union[str, Path],
                    image_size: Optional[int] = None, pretrained: Optional[str] = None,
                    linear_head: Optional[str] = None) -> dict:
    """Everything a dataset result depends on besides the model (compared on reuse: a stored result computed
    from another data folder, resolution, weights tag or head is refused, never reused)."""
    return {"eps": [format_eps(e) for e in settings.eps], "attacks": list(settings.attacks), "n_iter": settings.n_iter,
            "restarts": settings.restarts, "n_targets": settings.n_targets, "samples": samples, "seed": settings.seed,
            "head_samples": head_samples, "data_root": str(Path(data_root).expanduser().resolve()),
            "image_size": image_size, "pretrained": pretrained, "linear_head": linear_head}


def run_benchmark(models: Sequence[str], datasets: Sequence[str], data_root: Union[str, Path], output: Union[str, Path],
                  *, settings: EvalSettings, samples: int = DEFAULT_SAMPLES, pretrained: Optional[str] = None,
                  image_size: Optional[int] = None, baseline: Optional[str] = None, cache_dir: str = "~/.cache/lore",
                  device: Union[str, torch.device] = "", linear_head: Optional[str] = None, head_samples: int = 10_000,
                  workers: int = 8) -> dict:
    """Evaluates every model on every dataset and writes OUTPUT/report.json, report.md and benchmark.png.

    Args:
        models: what `lore eval --model` accepts (names, export folders, run folders); `pretrained`
            applies to the open_clip names among them.
        datasets: CLIP_benchmark names (see `zero_shot.PAPER_DATASETS`).
        data_root: folder holding the datasets (layouts in `datasets.LAYOUTS`).
        output: the report folder; per-dataset results live in OUTPUT/models/MODEL/.
        settings: attacks, eps, iterations, batch size, seed.
        samples: images per dataset (a fixed subset drawn from `settings.seed`; all when fewer).
        baseline: the model (as given, or its label) the ↑/↓ differences refer to; default the first.
        linear_head: for encoders without a text tower, a safetensors file with "weight" [K, D] and
            "bias" [K] (may contain "{dataset}"); otherwise a head is fitted on `head_samples` clean
            train-split features and saved next to the results for reuse.
        workers: threads decoding images.

    Returns:
        The report (as written to report.json).
    """
    labels = _check_request(models, datasets, samples, pretrained)
    base_label = _baseline_label(baseline, models, labels)
    fingerprints = check_datasets_present(datasets, data_root)
    output = Path(output)
    record = settings_record(settings, samples, head_samples, data_root=data_root, image_size=image_size,
                             pretrained=pretrained, linear_head=linear_head)
    device = resolve_device(device) if isinstance(device, str) else device
    results: dict[str, dict[str, dict]] = {label: {} for label in labels}

    def report(status: str) -> dict:
        return write_benchmark_report(results, list(datasets), output, baseline=base_label, status=status, settings=record,
                                      specs=dict(zip(labels, models)), provenance=provenance(device=str(device)))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for model, label in zip(models, labels):
            folder = output / "models" / label
            # loaded even when every result is stored: a stored result is reused only for the same weights
            built = load_model(model, pretrained, image_size, cache_dir=cache_dir, seed=settings.seed, device=device)
            built.encoder.eval().requires_grad_(False)
            weights = weights_sha256(built.encoder)
            for name in tqdm(datasets, desc=f"{label}", unit="dataset"):
                prepared = prepare_dataset(built, name, data_root, samples=samples, seed=settings.seed, pool=pool,
                                           cache_dir=cache_dir, linear_head=linear_head, head_samples=head_samples,
                                           head_folder=folder / "heads")
                key = {"model": canonical_model(model), "settings": record, "weights_sha256": weights,
                       "data_fingerprint": {**fingerprints[name], "subset_pixels_sha256": prepared.pixels_sha256},
                       "head_fingerprint": prepared.head_fingerprint}
                results[label][name], computed = _stored_or_computed(folder / f"{name}.json", key, built, prepared,
                                                                     settings, label)
                if computed:
                    report("incomplete")
    return report("complete")


def _check_request(models: Sequence[str], datasets: Sequence[str], samples: int, pretrained: Optional[str]) -> list[str]:
    """The models' labels, after refusing unknown datasets, a sample count below 1, no model, or two models that
    share a label."""
    unknown = [d for d in datasets if d not in PAPER_DATASETS]
    if unknown:
        raise ValueError(f"unknown benchmark dataset(s) {unknown}; choose from {list(PAPER_DATASETS)}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not models:
        raise ValueError("no model to evaluate")
    labels = [model_label(m, pretrained) for m in models]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two models share a name {labels}; give them distinct folder names")
    return labels


def _stored_or_computed(path: Path, key: dict, built: BuiltModel, prepared: PreparedDataset, settings: EvalSettings,
                        label: str) -> tuple[dict, bool]:
    """(the dataset's stored record, whether it was computed now): the record at `path` when it was computed from
    `key`, else a new evaluation, stored there with its key."""
    if path.is_file():
        return reuse_result(path, key), False
    result = evaluate_dataset(built, prepared, settings=settings)
    record = {**result.as_dict(), **key}
    store_result(path, record)
    tqdm.write(f"{label} {prepared.name}: clean {result.clean:.3f}, robust "
               + ", ".join(f"{e} {v:.3f}" for e, v in result.robust.items()) + f" ({result.samples} images)")
    return record, True


def evaluate_dataset(built: BuiltModel, prepared: PreparedDataset, *, settings: EvalSettings) -> DatasetResult:
    """One model on one prepared dataset, as a `DatasetResult`."""
    for warning in prepared.warnings:
        tqdm.write(f"warning: {warning}")
    classifier = torch.nn.Sequential(built.encoder, prepared.head).eval()
    report = evaluate(classifier, prepared.images, prepared.labels, settings, embed=built.encoder,
                      class_embeddings=prepared.class_embeddings)
    robust = {eps: list(row.values())[-1] for eps, row in report.robust_accuracy.items()}
    attacks = {eps: list(row)[-1] for eps, row in report.robust_accuracy.items()}
    return DatasetResult(clean=report.clean_accuracy, robust=robust, robust_by_attack=report.robust_accuracy,
                         attacks=sorted(set(attacks.values())), samples=report.n_samples,
                         classes=len(prepared.classnames), head=prepared.head_kind,
                         warnings=report.warnings + prepared.warnings, dataset_images=prepared.dataset_images,
                         alignment=report.alignment)


def _baseline_label(baseline: Optional[str], models: Sequence[str], labels: Sequence[str]) -> str:
    if baseline is None:
        return labels[0]
    for model, label in zip(models, labels):
        if baseline in (model, label):
            return label
    raise ValueError(f"baseline {baseline!r} is not one of the evaluated models {list(labels)}")


__all__ = ["DEFAULT_SAMPLES", "DatasetResult", "PreparedDataset", "check_data", "evaluate_dataset",
           "model_label", "prepare_dataset", "run_benchmark", "settings_record", "size_warning"]
