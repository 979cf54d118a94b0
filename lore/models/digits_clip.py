"""The embedded default: a small CLIP-style model trained on scikit-learn's digits.

An image tower (`SmallConvNet`) and a text tower (open_clip's
`TextTransformer`, 2 layers) are trained contrastively on the digit images
and captions such as "a photo of the digit seven", so that zero-shot
classification through text prompts works exactly as with CLIP. The result
is the frozen reference phi_0 of `examples/lore_clip.py` and of
`lore train --model digits-clip`.

Its weights for the default setting (16 px, seed 0, 400 steps) ship with the
package (`lore/models/weights/`, with a JSON record of the commit, machine,
torch version and thread count that produced them), so every machine starts
from the same phi_0: retraining it elsewhere gives slightly different
weights (float reassociation), and fine-tuning amplifies the difference.
`--pretrained retrained` (`examples/lore_clip.py --retrain-reference`)
builds it on the running machine instead, cached per (size, seed, steps);
`python -m lore.models.digits_clip` rewrites the shipped files.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer
from torch import nn

from ..data.digits import DIGIT_NAMES, Digits
from ..data.zero_shot import DIGITS_CAPTIONS as CAPTIONS
from ..files import write_text_atomic
from .digits import SmallConvNet
from .encoders import ImageEncoder, load_state_file, save_state_file

CONTEXT = 16
SHIPPED = Path(__file__).resolve().parent / "weights"
DEFAULT_STEPS = 400
SOURCES = ("shipped", "retrained")


class DigitsCLIP(nn.Module):
    """CLIP-style model for 16x16 digits: `visual` (pixels [0, 1] -> [B, D]) and `encode_text`.

    Args:
        embed_dim: D, the shared embedding width.
        width: conv width of the image tower.
    """

    def __init__(self, embed_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.visual = ImageEncoder(SmallConvNet(embed_dim, width), (0.5,) * 3, (0.5,) * 3, embed_dim=embed_dim)
        self.text = TextTransformer(context_length=CONTEXT, width=64, heads=2, layers=2, output_dim=embed_dim)
        self.register_buffer("logit_scale", torch.tensor(20.0).log())  # fixed temperature 1/20: stable on tiny data

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)


def digits_tokenizer() -> SimpleTokenizer:
    """open_clip's BPE tokenizer with a 16-token context (the captions are short)."""
    return SimpleTokenizer(context_length=CONTEXT)


def train_digits_clip(data: Digits, *, steps: int = 300, batch_size: int = 128, lr: float = 5e-4, seed: int = 0,
                      embed_dim: int = 64, width: int = 32) -> DigitsCLIP:
    """Contrastive (InfoNCE) training on images and random captions of their class.

    Only the classes' captions are contrasted: each image's positive is the
    caption embedding of its own digit, the other nine digits are negatives.
    The peak lr 5e-4 is stable: at 1e-3, 2 of 3 seeds collapsed to about 0.23
    zero-shot accuracy on the 1343 train + validation digits (docs/log.md,
    2026-12-06); at 5e-4, seeds 0-3 reach 0.980-0.996 on the test digits.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DigitsCLIP(embed_dim, width)
    tokenizer = digits_tokenizer()
    tokens = torch.stack([tokenizer([c.format(n) for n in DIGIT_NAMES]) for c in CAPTIONS])  # [T, 10, L]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data.labels), (batch_size,), generator=generator)
        template = int(torch.randint(0, len(CAPTIONS), (1,), generator=generator))
        images = data.images[idx]
        shift = torch.randint(-1, 2, (2,), generator=generator).tolist()  # small translations
        images = torch.roll(images, shifts=shift, dims=(2, 3))
        image_emb = F.normalize(model.encode_image(images), dim=1)
        text_emb = F.normalize(model.encode_text(tokens[template]), dim=1)  # [10, D]
        logits = model.logit_scale.exp() * image_emb @ text_emb.T
        loss = F.cross_entropy(logits, data.labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def reference_file_name(size: int, seed: int, steps: int) -> str:
    """The safetensors file name of the digits CLIP model for (image size, seed, training steps); "trainval": it is
    pretrained on the train and validation digits of `Digits.splits(seed)`, never on the test digits."""
    return f"digits-clip-{size}px-seed{seed}-steps{steps}-trainval.safetensors"


def shipped_reference(size: int, seed: int, steps: int = DEFAULT_STEPS) -> Optional[Path]:
    """The packaged weights for this setting, or None when the package ships none for it."""
    path = SHIPPED / reference_file_name(size, seed, steps)
    return path if path.is_file() else None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load(path: Path) -> DigitsCLIP:
    model = DigitsCLIP()
    model.load_state_dict(load_state_file(path))
    return model.eval()


def load_or_train_digits_clip(data: Digits, cache_dir: Path, *, seed: int = 0, steps: int = DEFAULT_STEPS,
                              source: Optional[str] = None) -> DigitsCLIP:
    """The digits CLIP model for (image size, seed, steps).

    Args:
        data: the training digits (used only when the model is trained here).
        cache_dir: where models trained on this machine are cached.
        seed: training seed.
        steps: training steps.
        source: "shipped" (default; falls back to training here when the package ships no weights for this
            setting) or "retrained" (train on this machine, cached in `cache_dir`).

    Raises:
        ValueError: unknown `source`, or packaged weights that do not match their recorded SHA-256.
    """
    source = source or "shipped"
    if source not in SOURCES:
        raise ValueError(f"the digits-clip weights come from one of {SOURCES} (--pretrained), got {source!r}")
    size = data.images.shape[-1]
    shipped = shipped_reference(size, seed, steps) if source == "shipped" else None
    if shipped is not None:
        record = json.loads(shipped.with_suffix(".json").read_text())
        if file_sha256(shipped) != record["file_sha256"]:
            raise ValueError(f"{shipped} does not match its recorded SHA-256 ({shipped.with_suffix('.json').name}): "
                             "the package data is damaged; reinstall, or use --pretrained retrained")
        return _load(shipped)
    path = Path(cache_dir).expanduser() / reference_file_name(size, seed, steps)
    if path.is_file():
        return _load(path)
    model = train_digits_clip(data, steps=steps, seed=seed)
    save_state_file(model.state_dict(), path)
    return model


def write_shipped_reference(folder: Path = SHIPPED, *, size: int = 16, seed: int = 0,
                            steps: int = DEFAULT_STEPS) -> Path:
    """Trains the reference on this machine and writes it with its provenance record into `folder`.

    The record (`.json` next to the weights) holds the file's SHA-256, the training setting, which digits it was
    trained on (train + validation of `Digits.splits(seed)`: their count and `index_sha256`), the code version,
    torch version, thread count and machine, and the model's zero-shot accuracy on the test and validation
    digits, so a rebuild elsewhere can be compared with it.
    """
    from ..data.digits import load_digits_images
    from ..provenance import code_version

    parts = load_digits_images(size).splits(seed)
    pretraining = parts.pretraining()  # train + validation: never the test digits
    model = train_digits_clip(pretraining, steps=steps, seed=seed)
    path = save_state_file(model.state_dict(), Path(folder) / reference_file_name(size, seed, steps))
    record = {
        "file_sha256": file_sha256(path), "image_size": size, "seed": seed, "steps": steps,
        "trained_on": {"parts": ["train", "validation"], "split_seed": seed, "digits": len(pretraining),
                       "index_sha256": index_sha256(pretraining.index)},
        "test_zero_shot_accuracy": zero_shot_accuracy(model, parts.test),
        "validation_zero_shot_accuracy": zero_shot_accuracy(model, parts.validation),
        "code": code_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "machine": machine_fingerprint(),
    }
    write_text_atomic(path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return path


def index_sha256(index: torch.Tensor) -> str:
    """SHA-256 of a set of digit positions (sorted, as decimal text): names exactly which digits a model saw."""
    return hashlib.sha256(",".join(str(i) for i in sorted(index.tolist())).encode()).hexdigest()


def machine_fingerprint() -> dict[str, str]:
    """What decides float results on a CPU besides the code: processor, architecture, torch build."""
    processor = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"processor": processor, "machine": platform.machine(), "torch": torch.__version__,
            "threads": str(torch.get_num_threads())}


@torch.no_grad()
def zero_shot_accuracy(model: DigitsCLIP, data: Digits) -> float:
    """Share of `data` classified correctly through the averaged caption embeddings of the ten digits."""
    tokenizer = digits_tokenizer()
    text = torch.stack([F.normalize(model.encode_text(tokenizer([c.format(n) for n in DIGIT_NAMES])), dim=1)
                        for c in CAPTIONS]).mean(0)
    logits = F.normalize(model.encode_image(data.images), dim=1) @ F.normalize(text, dim=1).T
    return float((logits.argmax(1) == data.labels).float().mean())


if __name__ == "__main__":
    print(write_shipped_reference())
