"""Held-out measurements taken during training: clean/robust accuracy, distance to phi_0, lambda."""

from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from constrained import MultiplierKind, RelaxationCost

from ..attacks.projected_gradient import pgd
from ..heads import ZeroShotHead

QUANTILES = (0.1, 0.5, 0.9)
NEAR_MARGIN = 0.9  # an image with ||phi - phi_0||^2 > 0.9 m(x) is outside or within 10 % of its margin


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..N-1 of a [N] tensor, tied values sharing the mean of their ranks (float64)."""
    _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)  # unique values sorted
    ends = counts.cumsum(0).double()
    return ((ends - counts + ends - 1) / 2)[inverse]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two [N] tensors (ties: average ranks); NaN when either is constant."""
    ra, rb = average_ranks(a.flatten()), average_ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / norm if norm > 0 else float("nan")


@torch.no_grad()
def _embed(encoder, images, batch_size):
    return torch.cat([encoder(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def probe(
    encoder: torch.nn.Module,
    reference,
    head: ZeroShotHead,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    margin: Callable[[torch.Tensor], torch.Tensor],
    pgd_steps: int = 10,
    multiplier: Optional[MultiplierKind] = None,
    relax: Optional[RelaxationCost] = None,
    batch_size: int = 256,
    seed: int = 0,
    autocast_dtype: Optional[torch.dtype] = None,
) -> dict[str, float]:
    """Clean and PGD-robust accuracy of `head` on `encoder`, and how far clean embeddings moved.

    Args:
        encoder: the plain (unwrapped) encoder; its train/eval mode is restored afterwards.
        reference: frozen phi_0.
        head: classification head on embeddings.
        images: [N, C, H, W] held-out images in [0, 1]; labels: [N].
        eps: PGD radius for the robust accuracy (pixel units).
        margin: m(phi_0(x)) -> [N] for the `probe/within_margin` fraction (||phi - phi_0||^2 <= m), e.g.
            `NormMargin(rho)`; the relative distances are reported whatever the margin.
        multiplier: the method's multiplier (a `constrained.protocols.MultiplierKind`), to report its lambda on held-out data.
        relax: the constraint's relaxation cost when `margin` is that constraint's own (see `_relaxation`).
        batch_size: images per forward pass (the training batch size: no more memory than a training step).
        seed: seed of the PGD starts.
        autocast_dtype: e.g. torch.bfloat16 to run the forwards under autocast, as training does
            (statistics are computed in fp32).

    Returns:
        probe/clean_accuracy, probe/robust_accuracy, probe/within_margin, probe/near_fraction (the share of
        images outside or within 10 % of their margin, ||phi - phi_0||^2 > 0.9 m: 0 when the constraint binds
        nowhere), probe/relative_distance_q10/q50/q90 (||phi - phi_0||^2 / ||phi_0||^2), and probe/lambda_mean and
        probe/lambda_q10/q50/q90 when a multiplier is given (a scalar multiplier has no spread), with
        probe/lambda_near_mean (mean lambda over images outside or within 10 % of their margin,
        ||phi - phi_0||^2 > 0.9 m) and probe/lambda_inside_mean (over the others, comfortably inside);
        NaN when no image is in that group; and probe/lambda_deviation_rank_correlation, Spearman's
        correlation over images of lambda(x) with ||phi - phi_0||^2 / m(x) (how far each image has used its
        margin; defined even when no image is near it, NaN when lambda or the deviations are constant). With
        `relax` and a multiplier: probe/relaxation_mean, probe/relaxation_q50/q90 (u(x)) and
        probe/relaxation_over_margin_mean (u(x) / m(x): by how much of itself each bound was relaxed).
    """
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    precision = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                 else contextlib.nullcontext())
    try:
        with precision:
            return _probe(encoder, reference, head, images, labels, eps=eps, margin=margin, pgd_steps=pgd_steps,
                          multiplier=multiplier, relax=relax, batch_size=batch_size, seed=seed, device=device)
    finally:
        encoder.train(was_training)


def _relaxation(relax: RelaxationCost, lam: torch.Tensor, distance: torch.Tensor,
                tolerance: torch.Tensor) -> dict[str, float]:
    """Held-out u(x) of a relaxed constraint (`constrained.relaxation`): its cost's relaxation at lambda(x) ([N],
    or one lambda) and the violation ||phi - phi_0||^2 - m(x) (`distance`, `tolerance`: [N]), summarised."""
    tolerance = tolerance.float().cpu()
    violation = distance.float().cpu() - tolerance
    u = relax.relaxation(lam.expand_as(violation) if lam.numel() == 1 else lam, violation).float()
    quantiles = torch.quantile(u, torch.tensor((0.5, 0.9))).tolist()
    return {"probe/relaxation_mean": u.mean().item(), "probe/relaxation_q50": quantiles[0],
            "probe/relaxation_q90": quantiles[1],
            "probe/relaxation_over_margin_mean": (u / tolerance.clamp_min(1e-12)).mean().item()}


def _probe(encoder, reference, head, images, labels, *, eps, margin, pgd_steps, multiplier, relax, batch_size, seed,
           device) -> dict[str, float]:
    """`probe` under its precision context."""
    images, labels = images.to(device), labels.to(device)
    clean = _embed(encoder, images, batch_size).float()
    ref = torch.cat([reference(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]).float()
    correct = robust = 0
    generator = torch.Generator(device=device).manual_seed(seed)
    for i in range(0, len(images), batch_size):
        x, y = images[i : i + batch_size], labels[i : i + batch_size]
        delta = pgd(lambda z: F.cross_entropy(head(encoder(z)), y, reduction="none"), x, eps=eps,
                    steps=pgd_steps, generator=generator)
        with torch.no_grad():
            robust += (head(encoder(x + delta)).argmax(1) == y).sum().item()
    correct = (head(clean).argmax(1) == labels).sum().item()
    distance = (clean - ref).pow(2).sum(1)
    relative = distance / ref.pow(2).sum(1).clamp_min(1e-12)
    quantiles = torch.quantile(relative.float().cpu(), torch.tensor(QUANTILES)).tolist()
    tolerance = margin(ref)
    near = distance > NEAR_MARGIN * tolerance  # outside or within 10 % of the margin
    out = {
        "probe/clean_accuracy": correct / len(labels),
        "probe/robust_accuracy": robust / len(labels),
        "probe/within_margin": int((distance <= tolerance).sum()) / len(labels),
        "probe/near_fraction": int(near.sum()) / len(labels),
    }
    out.update({f"probe/relative_distance_q{int(q * 100)}": v for q, v in zip(QUANTILES, quantiles)})
    if multiplier is not None and not multiplier.per_index:  # per-index: no held-out lambda
        with torch.no_grad():
            lam = multiplier.value(None if multiplier.averages_constraint else ref)
        lam = lam.detach().float().flatten().cpu()
        out["probe/lambda_mean"] = lam.mean().item()
        if relax is not None:  # u(x) from this lambda and these distances: no second pass over the images
            out.update(_relaxation(relax, lam, distance, tolerance))
        if lam.numel() > 1:
            lambda_quantiles = torch.quantile(lam, torch.tensor(QUANTILES)).tolist()
            out.update({f"probe/lambda_q{int(q * 100)}": v for q, v in zip(QUANTILES, lambda_quantiles)})
            near = near.cpu()
            out["probe/lambda_near_mean"] = lam[near].mean().item() if bool(near.any()) else float("nan")
            out["probe/lambda_inside_mean"] = lam[~near].mean().item() if bool((~near).any()) else float("nan")
            used = (distance / tolerance.clamp_min(1e-12)).float().cpu()
            out["probe/lambda_deviation_rank_correlation"] = rank_correlation(lam, used)
    return out
