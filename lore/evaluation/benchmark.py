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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tqdm import tqdm

from ..data.benchmark import build_benchmark_dataset
from ..data.release_files import RELEASE_COUNTS
from ..data.images import load_batch, probe_subset
from ..data.zero_shot import PAPER_DATASETS
from ..devices import resolve_device
from ..heads import class_text_embeddings
from ..jsonio import write_json
from ..models.build import BuiltModel, zero_shot_head
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
            # loaded even when every result is stored: a stored result is reused only for the same weights
            built = load_model(model, pretrained, image_size, cache_dir=cache_dir, seed=settings.seed, device=device)
            built.encoder.eval().requires_grad_(False)
            weights[label] = weights_sha256(built.encoder)
            for name in tqdm(datasets, desc=f"{label}", unit="dataset"):
                path = folder / f"{name}.json"
                prepared = prepare_dataset(built, name, data_root, samples=samples, seed=settings.seed, pool=pool,
                                           cache_dir=cache_dir, linear_head=linear_head, head_samples=head_samples,
                                           head_folder=folder / "heads")
                key = {"model": _canonical(model), "settings": record, "weights_sha256": weights[label],
                       "data_fingerprint": {**fingerprints[name], "subset_pixels_sha256": prepared.pixels_sha256},
                       "head_fingerprint": prepared.head_fingerprint}
                if path.is_file():
                    results[label][name] = _reuse(path, key)
                    continue
                result = evaluate_dataset(built, prepared, settings=settings)
                result.update(key)
                _write_json(path, result)
                results[label][name] = result
                tqdm.write(f"{label} {name}: clean {result['clean']:.3f}, robust "
                           + ", ".join(f"{e} {v:.3f}" for e, v in result["robust"].items()) + f" ({result['samples']} images)")
                report("incomplete")
    return report("complete")


@dataclass
class PreparedDataset:
    """One benchmark dataset made ready for one model: its evaluated subset, its head, and the fingerprints of
    both (a stored result is reused only when they match).

    Attributes:
        name: the CLIP_benchmark name.
        images: [N, 3, S, S] float in [0, 1], the seeded subset; labels: [N] int64.
        pixels_sha256: SHA-256 of the subset's pixels and labels as loaded (changed pixels change it).
        head: the classifier head on the encoder's features; head_kind: how it was made (shown in reports).
        head_fingerprint: SHA-256 of what the head was made from (text tower and prompts; or the encoder's
            weights, train data, sample count and seed; or a loaded head file's bytes).
        classnames, dataset_images: the class names and the size of the whole split; warnings: about the split.
        class_embeddings: [K, D] the zero-shot class embeddings, or None for a linear head.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    pixels_sha256: str
    head: torch.nn.Module
    head_kind: str
    head_fingerprint: str
    classnames: tuple
    dataset_images: int
    warnings: list
    class_embeddings: Optional[torch.Tensor]


def prepare_dataset(built: BuiltModel, name: str, data_root: Union[str, Path], *, samples: int, seed: int, pool=None,
                    cache_dir: str = "~/.cache/lore", linear_head: Optional[str] = None, head_samples: int = 10_000,
                    head_folder: Optional[Path] = None) -> PreparedDataset:
    """The seeded test subset of `name` and the head `built` is evaluated with (see `PreparedDataset`)."""
    device = next(built.encoder.parameters()).device
    dataset = build_benchmark_dataset(name, data_root, built.image_size)
    classnames, templates = tuple(dataset.classnames), dataset.templates
    partial = size_warning(name, len(dataset))
    images, labels = probe_subset(dataset, samples, seed, workers_pool=pool)
    class_embeddings = None
    if built.clip is not None:
        class_embeddings, head_fingerprint = cached_class_embeddings(built.clip, built.tokenizer, classnames, templates,
                                                                     cache_dir, with_key=True)
        head, head_kind = zero_shot_head(built, class_embeddings.to(device)), "zero-shot"
    else:
        head, head_kind, head_fingerprint = _linear_head(built, name, data_root, linear_head, head_samples, seed, pool,
                                                         head_folder)
    if isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            width = built.encoder(images[:1].to(device)).shape[-1]
        if head.out_features != len(classnames) or head.in_features != width:
            raise ValueError(f"{name}: the linear head has {head.out_features} classes, the dataset {len(classnames)}; "
                             f"it takes {head.in_features} features, the encoder's features are {width} wide ({head_kind})")
    return PreparedDataset(name=name, images=images.to(device), labels=labels.to(device),
                           pixels_sha256=tensors_sha256(images, labels), head=head.to(device), head_kind=head_kind,
                           head_fingerprint=head_fingerprint, classnames=classnames, dataset_images=len(dataset),
                           warnings=[partial] if partial else [], class_embeddings=class_embeddings)


def evaluate_dataset(built: BuiltModel, prepared: PreparedDataset, *, settings: EvalSettings) -> dict:
    """One model on one prepared dataset: {"clean", "robust": {eps: worst case over the cascade}, "robust_by_attack",
    "attacks", "samples", "classes", "head", "alignment"?, "warnings", "dataset_images"}."""
    for warning in prepared.warnings:
        tqdm.write(f"warning: {warning}")
    classifier = torch.nn.Sequential(built.encoder, prepared.head).eval()
    report = evaluate(classifier, prepared.images, prepared.labels, settings, embed=built.encoder,
                      class_embeddings=prepared.class_embeddings)
    robust = {eps: list(row.values())[-1] for eps, row in report["robust_accuracy"].items()}
    attacks = {eps: list(row)[-1] for eps, row in report["robust_accuracy"].items()}
    result = {"clean": report["clean_accuracy"], "robust": robust, "robust_by_attack": report["robust_accuracy"],
              "attacks": sorted(set(attacks.values())), "samples": report["n_samples"], "classes": len(prepared.classnames),
              "head": prepared.head_kind, "warnings": report["warnings"] + prepared.warnings,
              "dataset_images": prepared.dataset_images}
    if "alignment" in report:
        result["alignment"] = report["alignment"]
    return result


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 over the dtype, shape and bytes of each tensor, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def cached_class_embeddings(clip: torch.nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[str],
                            cache_dir: Union[str, Path], *, with_key: bool = False):
    """`class_text_embeddings`, computed once per (text tower weights, class names, templates) and cached on disk.
    With `with_key`, returns (embeddings, the SHA-256 they are cached under)."""
    key = hashlib.sha256()
    key.update(text_tower_fingerprint(clip).encode())
    key.update(json.dumps([list(classnames), list(templates)]).encode())
    path = Path(cache_dir).expanduser() / "text_embeddings" / f"{key.hexdigest()[:32]}.safetensors"
    if path.is_file():
        embeddings = load_state_file(path)["embeddings"]
    else:
        embeddings = class_text_embeddings(clip, tokenizer, list(classnames), list(templates))
        save_state_file({"embeddings": embeddings}, path)
    return (embeddings, key.hexdigest()) if with_key else embeddings


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
                 pool, head_folder: Optional[Path]) -> tuple[torch.nn.Linear, str, str]:
    """(head, kind, fingerprint): a given head file (fingerprint: its bytes), else one fitted on `head_samples`
    clean train features and saved under head_folder by its fingerprint (the encoder's weights, the train split's
    files or pixels, the sample count and seed), so a head fitted on other inputs is never picked up."""
    if linear_head is not None:
        path = Path(linear_head.replace("{dataset}", name)).expanduser()
        head = load_linear_head(path)
        return head, f"linear (loaded from {path})", hashlib.sha256(path.read_bytes()).hexdigest()
    train = build_benchmark_dataset(name, data_root, built.image_size, split="train")
    inputs = {"encoder_weights_sha256": weights_sha256(built.encoder), "train_data": dataset_fingerprint(train, data_root),
              "head_samples": head_samples, "seed": seed, "image_size": built.image_size}
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    kind = "linear (fitted on clean train features)"
    saved = head_folder / f"{name}-{fingerprint[:16]}.safetensors" if head_folder is not None else None
    if saved is not None and saved.is_file():
        return load_linear_head(saved), kind, fingerprint
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 5))[:head_samples]
    features, labels = [], []
    device = next(built.encoder.parameters()).device
    with torch.no_grad():
        for start in tqdm(range(0, len(order), 256), desc=f"{name} linear head features", unit="batch", leave=False):
            images, batch_labels, _ = load_batch(train, order[start:start + 256], pool)
            features.append(built.encoder(images.to(device)).float())
            labels.append(batch_labels.to(device))
    head = fit_linear_head(torch.cat(features), torch.cat(labels), num_classes=len(train.classnames))
    if saved is not None:
        save_state_file(head.state_dict(), saved)
    return head, kind, fingerprint


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


def _reuse(path: Path, key: dict) -> dict:
    """The stored result at `path` if it was computed from exactly `key` (model, settings, weights, data, head);
    otherwise a ValueError naming every part that differs."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable result ({error}); delete it to recompute that dataset") from None
    required = ("clean", "robust", "samples", "settings")
    if not isinstance(result, dict) or any(key not in result for key in required) \
            or not isinstance(result["settings"], dict) or not isinstance(result["robust"], dict) \
            or not _is_fraction(result["clean"]) or not all(_is_fraction(v) for v in result["robust"].values()):
        raise ValueError(f"{path} is not a dataset result (it needs {', '.join(required)}, accuracies in [0, 1]); "
                         "delete it to recompute that dataset")
    differences = [f"{k}: stored {result['settings'].get(k)!r} vs now {v!r}"
                   for k, v in key["settings"].items() if result["settings"].get(k) != v]
    labels = {"model": "model", "weights_sha256": "weights (the encoder changed)",
              "data_fingerprint": "data (the files or pixels under the data root changed)",
              "head_fingerprint": "head (fitted on other data, samples or weights, or another head file)"}
    for field, label in labels.items():
        if result.get(field) != key[field]:
            differences.append(f"{label}: stored {result.get(field)!r} vs now {key[field]!r}")
    if differences:
        raise ValueError(f"{path} was computed under other settings ({'; '.join(differences)}); "
                         "use another --out folder, or delete that file to recompute it")
    return result


def _is_fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, value)
