"""The benchmark's heads, made once and kept: zero-shot class embeddings cached by the text tower's weights,
and linear heads fitted on clean train features saved by what they were fitted from (or loaded from a file)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tqdm import tqdm

from ..data.benchmark import build_benchmark_dataset
from ..data.images import load_batch
from ..heads import class_text_embeddings
from ..models.build import BuiltModel
from ..models.encoders import load_state_file, save_state_file
from ..provenance import dataset_fingerprint, tensor_bytes, weights_sha256
from .linear_head import fit_linear_head

FEATURE_BATCH = 256  #: images per forward pass when a linear head's train features are computed


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
            digest.update(tensor_bytes(tensor))
    clip._lore_text_fingerprint = digest.hexdigest()
    return clip._lore_text_fingerprint


def linear_head_for(built: BuiltModel, name: str, data_root, linear_head: Optional[str], head_samples: int, seed: int,
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
    features, labels = _train_features(built, train, name, head_samples, seed, pool)
    head = fit_linear_head(features, labels, num_classes=len(train.classnames))
    if saved is not None:
        save_state_file(head.state_dict(), saved)
    return head, kind, fingerprint


def _train_features(built: BuiltModel, train, name: str, head_samples: int, seed: int,
                    pool) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, D] float32, labels [N]) of `head_samples` train images drawn with seed + 5."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 5))[:head_samples]
    features, labels = [], []
    device = next(built.encoder.parameters()).device
    with torch.no_grad():
        for start in tqdm(range(0, len(order), FEATURE_BATCH), desc=f"{name} linear head features", unit="batch",
                          leave=False):
            images, batch_labels, _ = load_batch(train, order[start:start + FEATURE_BATCH], pool)
            features.append(built.encoder(images.to(device)).float())
            labels.append(batch_labels.to(device))
    return torch.cat(features), torch.cat(labels)


def load_linear_head(path: Path) -> torch.nn.Linear:
    """A fixed linear head from a safetensors file holding exactly "weight" [K, D] and "bias" [K]."""
    state = load_state_file(path)
    if set(state) != {"weight", "bias"} or state["weight"].dim() != 2 or state["bias"].shape != state["weight"].shape[:1]:
        raise ValueError(f"linear head {path} must hold exactly 'weight' [K, D] and 'bias' [K], got "
                         + ", ".join(f"{k} {tuple(v.shape)}" for k, v in state.items()))
    head = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict(state)
    return head.requires_grad_(False)
