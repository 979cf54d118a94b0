"""The embedded default: a small CLIP-style model trained on scikit-learn's digits.

An image tower (`SmallConvNet`) and a text tower (open_clip's
`TextTransformer`, 2 layers) are trained contrastively on the digit images
and captions such as "a photo of the digit seven", so that zero-shot
classification through text prompts works exactly as with CLIP. The result
is the frozen reference phi_0 of `examples/lore_clip.py` and of
`lore train --model digits-clip`. Built once per (size, seed) and cached.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer
from torch import nn

from ..data.digits import DIGIT_NAMES, Digits
from ..data.zero_shot import DIGITS_CAPTIONS as CAPTIONS
from .digits import SmallConvNet
from .encoders import ImageEncoder, load_state_file, save_state_file

CONTEXT = 16


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


def train_digits_clip(data: Digits, *, steps: int = 300, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                      embed_dim: int = 64, width: int = 32) -> DigitsCLIP:
    """Contrastive (InfoNCE) training on images and random captions of their class.

    Only the classes' captions are contrasted: each image's positive is the
    caption embedding of its own digit, the other nine digits are negatives.
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


def load_or_train_digits_clip(data: Digits, cache_dir: Path, *, seed: int = 0, steps: int = 400) -> DigitsCLIP:
    """The cached digits CLIP model for (image size, seed, steps), trained on `data` if missing."""
    size = data.images.shape[-1]
    path = Path(cache_dir).expanduser() / f"digits-clip-{size}px-seed{seed}-steps{steps}.safetensors"
    if path.is_file():
        model = DigitsCLIP()
        model.load_state_dict(load_state_file(path))
        return model.eval()
    model = train_digits_clip(data, steps=steps, seed=seed)
    save_state_file(model.state_dict(), path)
    return model
