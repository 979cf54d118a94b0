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

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tqdm import tqdm

from ..data.benchmark import build_benchmark_dataset
from ..data.release_files import RELEASE_COUNTS
from ..data.images import load_batch, probe_subset
from ..data.zero_shot import PAPER_DATASETS
from ..devices import resolve_device
from ..heads import ZeroShotHead, class_text_embeddings
from ..jsonio import write_json
from ..models.build import BuiltModel
from ..models.encoders import load_state_file, save_state_file
from ..provenance import dataset_fingerprint, provenance, weights_sha256
from ..units import format_eps
from .benchmark_report import write_benchmark_report
from .linear_head import fit_linear_head
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


def run_benchmark(
    models: Sequence[str],
    datasets: Sequence[str],
    data_root: Union[str, Path],
    output: Union[str, Path],
    *,
    settings: EvalSettings,
    samples: int = DEFAULT_SAMPLES,
    pretrained: Optional[str] = None,
    image_size: Optional[int] = None,
    baseline: Optional[str] = None,
    cache_dir: str = "~/.cache/lore",
    device: Union[str, torch.device] = "",
    linear_head: Optional[str] = None,
    head_samples: int = 10_000,
    workers: int = 8,
) -> dict:
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
    base_label = _baseline_label(baseline, models, labels)
    fingerprints = check_datasets_present(datasets, data_root)
    output = Path(output)
    record = settings_record(settings, samples, head_samples, data_root=data_root, image_size=image_size,
                             pretrained=pretrained, linear_head=linear_head)
    device = resolve_device(device) if isinstance(device, str) else device
    results: dict[str, dict[str, dict]] = {label: {} for label in labels}
    weights: dict[str, str] = {}  # label -> SHA-256 of the evaluated encoder (stored with each dataset result)

    def report(status: str) -> dict:
        return write_benchmark_report(results, list(datasets), output, baseline=base_label, status=status, settings=record,
                                      specs=dict(zip(labels, models)), provenance=provenance(device=str(device)))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for model, label in zip(models, labels):
            folder = output / "models" / label
            built: Optional[BuiltModel] = None
            for name in tqdm(datasets, desc=f"{label}", unit="dataset"):
                path = folder / f"{name}.json"
                if path.is_file():
                    results[label][name] = _reuse(path, _canonical(model), record, fingerprints[name])
                    continue
                if built is None:
                    built = load_model(model, pretrained, image_size, cache_dir=cache_dir, seed=settings.seed, device=device)
                    built.encoder.eval().requires_grad_(False)
                    weights[label] = weights_sha256(built.encoder)
                result = evaluate_dataset(built, name, data_root, settings=settings, samples=samples, pool=pool,
                                          cache_dir=cache_dir, linear_head=linear_head, head_samples=head_samples,
                                          head_folder=folder / "heads")
                result.update(model=_canonical(model), settings=record, weights_sha256=weights[label],
                              data_fingerprint=fingerprints[name])
                _write_json(path, result)
                results[label][name] = result
                tqdm.write(f"{label} {name}: clean {result['clean']:.3f}, robust "
                           + ", ".join(f"{e} {v:.3f}" for e, v in result["robust"].items()) + f" ({result['samples']} images)")
                report("incomplete")
    return report("complete")


def evaluate_dataset(built: BuiltModel, name: str, data_root: Union[str, Path], *, settings: EvalSettings, samples: int,
                     pool=None, cache_dir: str = "~/.cache/lore", linear_head: Optional[str] = None,
                     head_samples: int = 10_000, head_folder: Optional[Path] = None) -> dict:
    """One model on one dataset: {"clean", "robust": {eps: worst case over the cascade}, "robust_by_attack",
    "attacks", "samples", "classes", "head", "alignment"?, "warnings"}."""
    device = next(built.encoder.parameters()).device
    dataset = build_benchmark_dataset(name, data_root, built.image_size)
    classnames, templates = dataset.classnames, dataset.templates
    partial = size_warning(name, len(dataset))
    if partial:
        tqdm.write(f"warning: {partial}")
    images, labels = probe_subset(dataset, samples, settings.seed, workers_pool=pool)
    images, labels = images.to(device), labels.to(device)
    class_embeddings = None
    if built.clip is not None:
        class_embeddings = cached_class_embeddings(built.clip, built.tokenizer, classnames, templates, cache_dir)
        head, head_kind = ZeroShotHead(class_embeddings.to(device), scale=100.0), "zero-shot"
    else:
        head, head_kind = _linear_head(built, name, data_root, linear_head, head_samples, settings.seed, pool, head_folder)
    classifier = torch.nn.Sequential(built.encoder, head.to(device)).eval()
    report = evaluate(classifier, images, labels, settings, embed=built.encoder, class_embeddings=class_embeddings)
    robust = {eps: list(row.values())[-1] for eps, row in report["robust_accuracy"].items()}
    attacks = {eps: list(row)[-1] for eps, row in report["robust_accuracy"].items()}
    result = {"clean": report["clean_accuracy"], "robust": robust, "robust_by_attack": report["robust_accuracy"],
              "attacks": sorted(set(attacks.values())), "samples": report["n_samples"], "classes": len(classnames),
              "head": head_kind, "warnings": report["warnings"] + ([partial] if partial else []),
              "dataset_images": len(dataset)}
    if "alignment" in report:
        result["alignment"] = report["alignment"]
    return result


def cached_class_embeddings(clip: torch.nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[str],
                            cache_dir: Union[str, Path]) -> torch.Tensor:
    """`class_text_embeddings`, computed once per (text tower weights, class names, templates) and cached on disk."""
    key = hashlib.sha256()
    key.update(text_tower_fingerprint(clip).encode())
    key.update(json.dumps([list(classnames), list(templates)]).encode())
    path = Path(cache_dir).expanduser() / "text_embeddings" / f"{key.hexdigest()[:32]}.safetensors"
    if path.is_file():
        return load_state_file(path)["embeddings"]
    embeddings = class_text_embeddings(clip, tokenizer, list(classnames), list(templates))
    save_state_file({"embeddings": embeddings}, path)
    return embeddings


def text_tower_fingerprint(clip: torch.nn.Module) -> str:
    """SHA-256 of every non-visual weight of a CLIP model (the text tower and logit scale), computed once per model."""
    cached = getattr(clip, "_lore_text_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256(type(clip).__name__.encode())
    for name, tensor in sorted(clip.state_dict().items()):
        if not name.startswith("visual."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    clip._lore_text_fingerprint = digest.hexdigest()
    return clip._lore_text_fingerprint


def _linear_head(built: BuiltModel, name: str, data_root, linear_head: Optional[str], head_samples: int, seed: int,
                 pool, head_folder: Optional[Path]) -> tuple[torch.nn.Linear, str]:
    device = next(built.encoder.parameters()).device
    if linear_head is not None:
        path = Path(linear_head.replace("{dataset}", name)).expanduser()
        return load_linear_head(path).to(device), f"linear (loaded from {path})"
    saved = head_folder / f"{name}.safetensors" if head_folder is not None else None
    if saved is not None and saved.is_file():
        return load_linear_head(saved).to(device), "linear (fitted on clean train features)"
    train = build_benchmark_dataset(name, data_root, built.image_size, split="train")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 5))[:head_samples]
    features, labels = [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(order), 256), desc=f"{name} linear head features", unit="batch", leave=False):
            images, batch_labels, _ = load_batch(train, order[start:start + 256], pool)
            features.append(built.encoder(images.to(device)).float())
            labels.append(batch_labels.to(device))
    head = fit_linear_head(torch.cat(features), torch.cat(labels))
    if saved is not None:
        save_state_file(head.state_dict(), saved)
    return head, "linear (fitted on clean train features)"


def load_linear_head(path: Path) -> torch.nn.Linear:
    """A fixed linear head from a safetensors file holding exactly "weight" [K, D] and "bias" [K]."""
    state = load_state_file(path)
    if set(state) != {"weight", "bias"} or state["weight"].dim() != 2 or state["bias"].shape != state["weight"].shape[:1]:
        raise ValueError(f"linear head {path} must hold exactly 'weight' [K, D] and 'bias' [K], got "
                         + ", ".join(f"{k} {tuple(v.shape)}" for k, v in state.items()))
    head = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict(state)
    return head.requires_grad_(False)


def check_data(datasets: Sequence[str], data_root: Union[str, Path]) -> list[dict]:
    """What each dataset holds under `data_root`, before any attack: [{"dataset", "status" ("ok", "partial", "more",
    "unreadable"), "images", "expected" (the release's count or None), "classes", "problem"}]."""
    found = []
    for name in datasets:
        entry: dict = {"dataset": name, "expected": RELEASE_COUNTS.get(name)}
        try:
            dataset = build_benchmark_dataset(name, data_root, 32)
        except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
            found.append({**entry, "status": "unreadable", "images": None, "classes": None, "problem": str(error)})
            continue
        images, expected = len(dataset), entry["expected"]
        status = "ok" if expected is None or images == expected else "partial" if images < expected else "more"
        found.append({**entry, "status": status, "images": images, "classes": len(dataset.classnames), "problem": None})
    return found


def size_warning(name: str, images: int) -> Optional[str]:
    """A warning when `name` holds another number of images than its release, or None."""
    expected = RELEASE_COUNTS.get(name)
    if expected is None or images == expected:
        return None
    return (f"{name}: {images} images where the release has {expected} "
            f"({'a partial copy' if images < expected else 'more than released'}): not the paper's test set")


def check_datasets_present(datasets: Sequence[str], data_root: Union[str, Path]) -> dict[str, dict]:
    """Opens every dataset (file lists, class names) before any evaluation: all missing ones are named at once,
    in minutes rather than after hours of attacks on the first ones. Returns {name: fingerprint of what it
    holds} (`lore.provenance.dataset_fingerprint`), stored with each result and compared on reuse."""
    problems, fingerprints = [], {}
    for name in datasets:
        try:
            fingerprints[name] = dataset_fingerprint(build_benchmark_dataset(name, data_root, 32), data_root)
        except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
            problems.append(f"- {error}")
    if problems:
        raise FileNotFoundError(f"{len(problems)} of {len(datasets)} benchmark datasets cannot be read under {data_root}:\n"
                                + "\n".join(problems))
    return fingerprints


def _canonical(model: str) -> str:
    """A model as stored with its results: folders by absolute path (so ./runs/x and runs/x agree)."""
    return str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model


def _baseline_label(baseline: Optional[str], models: Sequence[str], labels: Sequence[str]) -> str:
    if baseline is None:
        return labels[0]
    for model, label in zip(models, labels):
        if baseline in (model, label):
            return label
    raise ValueError(f"baseline {baseline!r} is not one of the evaluated models {list(labels)}")


def _reuse(path: Path, model: str, record: dict, fingerprint: Optional[dict] = None) -> dict:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable result ({error}); delete it to recompute that dataset") from None
    required = ("clean", "robust", "samples", "settings")
    if not isinstance(result, dict) or any(key not in result for key in required) \
            or not isinstance(result["settings"], dict) or not isinstance(result["robust"], dict):
        raise ValueError(f"{path} is not a dataset result (it needs {', '.join(required)}); delete it to recompute "
                         "that dataset")
    differences = [f"{k}: stored {result.get('settings', {}).get(k)!r} vs now {v!r}"
                   for k, v in record.items() if result.get("settings", {}).get(k) != v]
    if result.get("model") != model:
        differences.append(f"model: stored {result.get('model')!r} vs now {model!r}")
    stored_data = result.get("data_fingerprint")
    if fingerprint is not None and stored_data is not None and stored_data != fingerprint:
        differences.append(f"data: the files under the data root changed (stored {stored_data} vs now {fingerprint})")
    if differences:
        raise ValueError(f"{path} was computed under other settings ({'; '.join(differences)}); "
                         "use another --out folder, or delete that file to recompute it")
    return result


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, value)
