"""What produced a result: code version, weights, data, software, device — recorded in every results file.

`provenance(...)` returns a JSON-ready dict; reports store it under "provenance", and a re-run compares the
parts that decide its numbers (`differences`) before reusing anything. Torch is imported only when weights
are hashed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Union

DISTRIBUTION = "lore-constrained"
_SOURCE = Path(__file__).resolve().parents[1]  # the checkout (or site-packages) holding lore/


def code_version() -> dict[str, Any]:
    """{"package": installed version or None, "commit": git HEAD of the source checkout or None, "dirty": whether
    tracked files differ from HEAD or an untracked, not ignored Python file is there (a module the code may import;
    other untracked files, such as run outputs, do not count); None without git}."""
    try:
        package: Optional[str] = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        package = None
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        modules = _git("ls-files", "--others", "--exclude-standard", "--", "*.py")
        dirty = bool(status) or bool(modules) if status is not None and modules is not None else None
    return {"package": package, "commit": commit, "dirty": dirty}


def _git(*args: str) -> Optional[str]:
    if not (_SOURCE / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def weights_sha256(module) -> str:
    """SHA-256 over a module's state dict: every entry's name, dtype, shape and bytes, in sorted name order.

    Two models with this hash compute the same function (given the same code)."""
    import torch

    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            _update_with_tensor(digest, value)
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def tensors_sha256(*tensors) -> str:
    """SHA-256 over the dtype, shape and bytes of each tensor, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        _update_with_tensor(digest, tensor)
    return digest.hexdigest()


def tensor_bytes(tensor) -> bytes:
    """A tensor's bytes as stored, on the CPU and contiguous (b"" for an empty tensor)."""
    import torch

    tensor = tensor.detach().cpu().contiguous()
    return tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def _update_with_tensor(digest, tensor) -> None:
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor_bytes(tensor))


def files_fingerprint(paths: Iterable[Union[str, Path]], root: Optional[Union[str, Path]] = None) -> dict[str, Any]:
    """{"files": N, "sha256": hash of the sorted (path relative to `root`, size in bytes, modification time in ns)
    list}: what was read, cheap enough for ImageNet's file list (one stat per file, not its contents). A file
    rewritten in place, even at the same size, changes its modification time and so the fingerprint."""
    entries = []
    for path in paths:
        path = Path(path)
        shown = os.path.relpath(path, root) if root is not None else str(path)
        try:
            status = path.stat()
            size, modified = status.st_size, status.st_mtime_ns
        except OSError:
            size, modified = -1, -1
        entries.append(f"{shown}\t{size}\t{modified}")
    entries.sort()
    return {"files": len(entries), "sha256": hashlib.sha256("\n".join(entries).encode()).hexdigest()}


def files_sha256(paths: Iterable[Union[str, Path]], root: Union[str, Path]) -> str:
    """SHA-256 over files' names (relative to `root`) and contents, in sorted name order (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


#: the files of a model folder that decide its function (weights, configs, processor, tokenizer)
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.json", "*.txt", "*.model")


def model_fingerprint(model: str, pretrained: Optional[str] = None) -> dict[str, Any]:
    """What a run's starting model is, so that a resume can refuse another: for an `hf:` or `local-dir:` folder
    the SHA-256 of its weights, configs, processor and tokenizer files (`MODEL_FILE_PATTERNS`); for a local
    weights file (`--pretrained FILE`) its SHA-256; otherwise the name and tag alone (a built-in or downloaded
    model that the name fixes)."""
    record: dict[str, Any] = {"name": model, "pretrained": pretrained}
    for prefix in ("hf:", "local-dir:"):
        if model.startswith(prefix):
            folder = Path(model[len(prefix):]).expanduser()
            files = [p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()]
            record["files_sha256"] = files_sha256(files, folder)
            record["files"] = len(files)
    if pretrained is not None and Path(pretrained).expanduser().is_file():
        path = Path(pretrained).expanduser()
        record["pretrained_sha256"] = files_sha256([path], path.parent)
    return record


def dataset_fingerprint(dataset, root: Optional[Union[str, Path]] = None) -> dict[str, Any]:
    """The file fingerprint of a file-backed dataset (anything exposing `.samples` or `.base.samples` as
    (path, label) pairs, or `.base.base...`), else {"items": N} with the SHA-256 of an in-memory dataset's
    `.labels` and of its `.pixels` array where it has them."""
    shards = getattr(dataset, "shards", None)  # webdataset shards: the files, and the labels of every sample
    if shards is not None:
        fingerprint = files_fingerprint(shards, root)
        fingerprint["samples"] = len(dataset)
        fingerprint["labels_sha256"] = hashlib.sha256(",".join(str(int(v)) for v in dataset.labels).encode()).hexdigest()
        return fingerprint
    samples = None
    current = dataset
    for _ in range(4):
        samples = getattr(current, "samples", None)
        if samples is not None:
            break
        current = getattr(current, "base", None)
        if current is None:
            break
    if samples:
        fingerprint = files_fingerprint((path for path, *_ in samples), root)
        fingerprint["labels_sha256"] = hashlib.sha256(",".join(str(label) for _, label, *_ in samples).encode()).hexdigest()
        return fingerprint
    record: dict[str, Any] = {"items": len(dataset)}
    labels = getattr(dataset, "labels", None)  # in-memory releases (CIFAR, STL-10): their label list
    if labels is not None:
        record["labels_sha256"] = hashlib.sha256(",".join(str(int(label)) for label in labels).encode()).hexdigest()
    pixels = getattr(dataset, "pixels", None)  # ... and their pixel array (hashing 30 MB of CIFAR takes ~0.05 s)
    if pixels is not None and hasattr(pixels, "tobytes"):
        record["pixels_sha256"] = hashlib.sha256(pixels.tobytes()).hexdigest()
    return record


def provenance(*, model=None, data: Optional[dict[str, Any]] = None, device: Optional[str] = None,
               settings: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Everything a result depends on besides its numbers.

    Args:
        model: the evaluated module (its weights are hashed), or None.
        data: e.g. {"spec": "...", "root": "...", **dataset_fingerprint(...)}.
        device: where it ran ("cpu", "cuda:0").
        settings: attack configuration and seeds, as the caller records them.
    """
    import torch

    record: dict[str, Any] = {
        "code": code_version(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    if model is not None:
        record["weights_sha256"] = weights_sha256(model)
    if data is not None:
        record["data"] = data
    if settings is not None:
        record["settings"] = settings
    return record
