"""The evaluation suite: clean accuracy, APGD-CE -> APGD-DLR-T robust accuracy, Square, noise, corruptions.

Robust accuracy follows AutoAttack's protocol: a point counts as robust only
if every attack fails on it, and each attack runs only on points that are
still robust (clean-misclassified points are never attacked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..attacks.auto_pgd import apgd_ce, apgd_dlr_targeted
from ..attacks.corruptions import CORRUPTIONS, gaussian_noise
from ..attacks.masking import check_gradient_masking
from ..attacks.square import square_attack
from ..plugins import resolve
from ..progress import progress
from ..units import format_eps
from .attacks import DEFAULT_ATTACKS, attack_entry


@dataclass
class EvalSettings:
    """What to run.

    Attributes:
        eps: l_inf radii (pixel units) for the APGD cascade and Square.
        attacks: registered attack names (`lore.evaluation.attacks`), run in this order.
        n_iter, restarts, n_targets: APGD iterations, restarts, DLR-T target classes (AutoAttack: 100, 1, 9).
        square_queries: Square attack budget per image (0: skip).
        noise_sigmas: Gaussian noise std list (pixel units).
        corruptions: names from `CORRUPTIONS`, each at severities 1..5.
        batch_size, seed: batching and randomness.
    """

    eps: Sequence[float] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    attacks: Sequence[str] = DEFAULT_ATTACKS
    n_iter: int = 100
    restarts: int = 1
    n_targets: int = 9
    square_queries: int = 0
    noise_sigmas: Sequence[float] = ()
    corruptions: Sequence[str] = ()
    batch_size: int = 128
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for attack in self.attacks:
            attack_entry(attack)  # refuses an unknown name with the registered ones
        bad = [c for c in self.corruptions if c not in CORRUPTIONS]
        if bad:
            raise ValueError(f"unknown corruptions {bad}; choose from {sorted(CORRUPTIONS)}")
        if any(not (0 <= e <= 1) for e in self.eps):
            raise ValueError(f"eps values must be in [0, 1] (pixel fractions like 4/255), got {list(self.eps)}")
        for name in ("batch_size", "n_iter", "restarts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if "apgd-t" in self.attacks and self.n_targets < 1:
            raise ValueError(f"n_targets must be >= 1 when apgd-t runs, got {self.n_targets}")
        if self.square_queries < 0:
            raise ValueError(f"square_queries must be >= 0 (0 skips Square), got {self.square_queries}")
        if (self.attacks or self.square_queries) and not self.eps:
            raise ValueError("eps is empty but attacks are requested; give at least one radius")
        bad = [s for s in self.noise_sigmas if not (math.isfinite(s) and s > 0)]
        if bad:
            raise ValueError(f"noise_sigmas must be finite and > 0, got {bad}")


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.no_grad()
def _predict(classifier, images, batch_size):
    return torch.cat([classifier(images[s]).argmax(1) for s in _batches(len(images), batch_size)])


def robust_accuracy(classifier: Callable, images: torch.Tensor, labels: torch.Tensor, eps: float,
                    settings: EvalSettings, *, eps_index: int = 0) -> dict[str, float]:
    """The APGD cascade at one eps.

    Returns:
        `{"apgd-ce": accuracy under APGD-CE alone, "apgd-ce+apgd-t": accuracy under both (worst case),
        "robust_mask": list of per-sample booleans}`; keys follow `settings.attacks`.
    """
    robust = _predict(classifier, images, settings.batch_size) == labels
    results: dict[str, float] = {}
    done = []
    with torch.no_grad():
        num_classes = classifier(images[:1]).shape[1]
    for attack in settings.attacks:
        entry = attack_entry(attack)
        if num_classes < entry.min_classes:
            continue  # e.g. targeted DLR on PCAM's 2 classes: it does not run, so no label may claim it
        run = resolve(entry.run, f"the run of attack {attack!r}")
        todo = robust.nonzero().flatten()
        bar = progress(len(todo), f"{attack} eps={format_eps(eps)}", unit="img", enabled=settings.progress, quarters=False)
        for batch_index, s in enumerate(_batches(len(todo), settings.batch_size)):
            index = todo[s]
            generator = torch.Generator(device=images.device).manual_seed(settings.seed * 100_003 + eps_index * 1009 + batch_index)
            fooled = run(classifier, images[index], labels[index], eps, settings, generator)
            if not (isinstance(fooled, torch.Tensor) and fooled.dtype == torch.bool and fooled.shape == index.shape):
                raise ValueError(f"attack {attack!r} must return a bool tensor of shape {tuple(index.shape)} (which "
                                 f"inputs it fooled), got {getattr(fooled, 'dtype', type(fooled).__name__)} "
                                 f"{tuple(getattr(fooled, 'shape', ()))}")
            robust[index[fooled.to(index.device)]] = False
            bar.update(len(index))
        bar.close()
        done.append(attack)
        results["+".join(done)] = fraction(robust)
    return results


def run_apgd_ce(classifier: Callable, images: torch.Tensor, labels: torch.Tensor, eps: float,
                settings: EvalSettings, generator: torch.Generator) -> torch.Tensor:
    """The registered run of "apgd-ce" (`lore.evaluation.attacks`): [B] bool, fooled by APGD-CE."""
    return apgd_ce(classifier, images, labels, eps=eps, n_iter=settings.n_iter, restarts=settings.restarts,
                   generator=generator)[0]


def run_apgd_dlr_targeted(classifier: Callable, images: torch.Tensor, labels: torch.Tensor, eps: float,
                          settings: EvalSettings, generator: torch.Generator) -> torch.Tensor:
    """The registered run of "apgd-t": [B] bool, fooled by APGD-DLR-T against `settings.n_targets` classes."""
    return apgd_dlr_targeted(classifier, images, labels, eps=eps, n_iter=settings.n_iter,
                             n_targets=settings.n_targets, restarts=settings.restarts, generator=generator)[0]


def skipped_attacks(classifier: Callable, images: torch.Tensor, settings: EvalSettings) -> list[dict[str, str]]:
    """The requested attacks that cannot run on this classifier (fewer classes than their `min_classes`), each
    with why: [{"attack", "reason"}]."""
    if not settings.attacks or not settings.eps:
        return []
    with torch.no_grad():
        num_classes = classifier(images[:1]).shape[1]
    entries = [attack_entry(attack) for attack in settings.attacks]
    ran = "+".join(entry.name for entry in entries if entry.min_classes <= num_classes) or "no attack"
    return [{"attack": entry.name,
             "reason": f"{entry.needs or f'{entry.name} needs at least {entry.min_classes} classes'}; this classifier "
                       f"has {num_classes}, so the robust accuracy is {ran}'s alone"}
            for entry in entries if num_classes < entry.min_classes]


def fraction(mask: torch.Tensor) -> float:
    """The share of True entries as an exact Python float (count / n, no float32 rounding noise)."""
    return int(mask.sum()) / mask.numel()


@dataclass
class EvalReport:
    """What `evaluate` measured; `as_dict()` is the JSON evaluation.json and the reports store.

    Attributes:
        n_samples: N, the images evaluated.
        clean_accuracy: the share classified correctly, clean.
        robust_accuracy: {eps as "k/255": {cascade so far ("apgd-ce", "apgd-ce+apgd-t"): share robust}}.
        skipped: the attacks that could not run, each {"attack", "reason"}.
        warnings: what the gradient-masking check (and the caller) found.
        square: {eps: share robust to Square}, when run.
        gaussian_noise: {sigma: share correct under Gaussian noise}, when run.
        corruptions: {name: {severity "1".."5": share correct}}, when run.
        alignment: mean cosine of clean embeddings with their class embedding (Fig. 4b), when measured.
    """

    n_samples: int
    clean_accuracy: float
    robust_accuracy: dict[str, dict[str, float]]
    skipped: list[dict[str, str]]
    warnings: list[str]
    square: Optional[dict[str, float]] = None
    gaussian_noise: Optional[dict[str, float]] = None
    corruptions: Optional[dict[str, dict[str, float]]] = None
    alignment: Optional[float] = None

    def as_dict(self) -> dict:
        """The report as JSON-ready dict, in this field order, without the parts that were not run."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def evaluate(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: EvalSettings,
    *,
    embed: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    class_embeddings: Optional[torch.Tensor] = None,
) -> EvalReport:
    """Runs the suite and returns its `EvalReport`.

    Args:
        classifier: images [B, C, H, W] in [0, 1] -> logits [B, K], in eval mode.
        images: [N, C, H, W] the evaluation set, in [0, 1].
        labels: [N] its int64 labels.
        settings: what to run.
        embed: image encoder, for the image-text alignment (mean cosine of clean embeddings with their
            class embedding, Fig. 4b).
        class_embeddings: [K, D] class text embeddings, for the same alignment.
    """
    if images.dim() != 4 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(f"need images [N > 0, C, H, W] and labels [N], got {tuple(images.shape)} and {tuple(labels.shape)}")
    warnings_seen = check_gradient_masking(classifier, images[: min(16, len(images))], labels[: min(16, len(labels))])
    predictions = _predict(classifier, images, settings.batch_size)
    report = EvalReport(n_samples=len(labels), clean_accuracy=fraction(predictions == labels), robust_accuracy={},
                        skipped=skipped_attacks(classifier, images, settings), warnings=warnings_seen)
    for i, eps in enumerate(settings.eps):
        if settings.attacks:
            report.robust_accuracy[format_eps(eps)] = robust_accuracy(classifier, images, labels, eps, settings, eps_index=i)
    if settings.square_queries:
        report.square = _square(classifier, images, labels, predictions, settings)
    if settings.noise_sigmas:
        generator = torch.Generator(device=images.device).manual_seed(settings.seed)
        report.gaussian_noise = {
            f"{sigma:g}": fraction(_predict(classifier, gaussian_noise(images, sigma, generator), settings.batch_size) == labels)
            for sigma in settings.noise_sigmas
        }
    if settings.corruptions:
        generator = torch.Generator(device=images.device).manual_seed(settings.seed)
        report.corruptions = {
            name: {str(sev): fraction(_predict(classifier, CORRUPTIONS[name](images, sev, generator), settings.batch_size) == labels)
                   for sev in range(1, 6)}
            for name in settings.corruptions
        }
    if embed is not None and class_embeddings is not None:
        with torch.no_grad():
            emb = torch.cat([embed(images[s]) for s in _batches(len(images), settings.batch_size)])
            cos = F.cosine_similarity(emb, class_embeddings[labels].to(emb), dim=1)
        report.alignment = round(cos.double().mean().item(), 6)
    return report


def _square(classifier: Callable, images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
            settings: EvalSettings) -> dict[str, float]:
    """{eps: share robust to Square}: Square attacks the clean-correct points, batch by batch, seeded per eps and
    batch."""
    square = {}
    for i, eps in enumerate(settings.eps):
        correct = (predictions == labels).nonzero().flatten()
        fooled_total = 0
        for b, s in enumerate(_batches(len(correct), settings.batch_size)):
            generator = torch.Generator(device=images.device).manual_seed(settings.seed + 31 * i + b)
            fooled, _ = square_attack(classifier, images[correct[s]], labels[correct[s]], eps=eps,
                                      n_queries=settings.square_queries, generator=generator)
            fooled_total += int(fooled.sum())
        square[format_eps(eps)] = (len(correct) - fooled_total) / len(labels)
    return square
