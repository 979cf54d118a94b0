"""APGD (Croce & Hein, ICML 2020): step-size-free l_inf PGD with momentum, as in AutoAttack.

Two losses, the first two attacks of AutoAttack's standard suite:
- `apgd_ce`: untargeted, cross-entropy;
- `apgd_dlr_targeted`: targeted DLR loss against each of the top-k non-true classes.

Written from the paper's Algorithm 1 and its description of AutoAttack:
step size starts at 2 eps and is halved at checkpoints w_j (p_0 = 0,
p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)) when fewer than
75 % of the steps since the last checkpoint increased the loss, or when the
step size was not reduced at the last checkpoint and the best loss has not
improved since; a halving restarts from the best point. Momentum 0.75.
Every iterate is checked: a point counts as broken as soon as any iterate
is misclassified.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

Classifier = Callable[[torch.Tensor], torch.Tensor]
"""images [B, C, H, W] in [0, 1] -> logits [B, K]."""


def checkpoints(n_iter: int) -> list[int]:
    """Iterations at which APGD may halve its step size (paper Sec. 3.2), in integer steps as AutoAttack.

    The first window is 0.22 n_iter long; each next one is 0.03 n_iter shorter, and at least 0.06 n_iter.
    """
    length = max(int(0.22 * n_iter), 1)
    shrink, shortest = max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
    marks, mark = [], length
    while mark <= n_iter:
        marks.append(mark)
        length = max(length - shrink, shortest)
        mark += length
    return marks


def dlr_targeted_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR loss per sample, [B]: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2); needs >= 4 classes."""
    if logits.shape[1] < 4:
        raise ValueError(f"the targeted DLR loss needs at least 4 classes, got {logits.shape[1]}")
    ordered, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, labels[:, None]).squeeze(1)
    target = logits.gather(1, targets[:, None]).squeeze(1)
    return -(true - target) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


def _project(x: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(x, images - eps), images + eps).clamp(0.0, 1.0)


def apgd(
    classifier: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    eps: float,
    n_iter: int = 100,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from a random start.

    A point leaves the batch as soon as an iterate is misclassified: every
    point's trajectory depends only on itself, so this computes what running
    all points to the end would (a point counts as broken if any iterate
    fools the model; up to float rounding of batch-size-dependent kernels)
    at a fraction of the cost.

    Args:
        classifier: images -> logits; must not change between calls nor mix samples (eval mode).
        images: [B, C, H, W] clean images in [0, 1]; labels: [B] true classes.
        loss_fn: (logits [A, K], indices [A] of those rows in the batch) -> per-sample loss [A] to maximise.
        eps: l_inf radius in pixel units.
        n_iter: iterations (updates; n_iter + 1 gradient evaluations with the start).
        generator: random start.

    Returns:
        (fooled [B] bool, adversarial images [B, C, H, W]); for points never
        misclassified the adversarial image is the best-loss iterate.
    """
    run = _Run(classifier, images, labels, loss_fn, eps, generator)
    marks = set(checkpoints(n_iter))
    last_mark = 0
    for k in range(n_iter):
        if len(run.state["active"]) == 0:
            break
        wrong = run.advance(momentum=0.75 if k > 0 else 1.0)
        if k + 1 in marks:
            run.reduce_steps(window=k + 1 - last_mark)
            last_mark = k + 1
        run.retire(wrong)
    run.adversarial[run.state["active"]] = run.state["best_x"]
    return run.fooled, run.adversarial.detach()


class _Run:
    """The per-point state of one APGD run (iterate, momentum, step size, best point, ...): rows leave every
    tensor of `state` as soon as they are misclassified, recorded in `fooled` and `adversarial` [B]."""

    def __init__(self, classifier: Classifier, images: torch.Tensor, labels: torch.Tensor,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], eps: float,
                 generator: Optional[torch.Generator]) -> None:
        self.classifier, self.loss_fn, self.eps = classifier, loss_fn, eps
        batch, device = images.shape[0], images.device
        view = (-1,) + (1,) * (images.dim() - 1)
        noise = 2 * torch.rand(images.shape, generator=generator, device=generator.device if generator else device) - 1
        noise = noise.to(images)
        x = _project(images + eps * noise / noise.flatten(1).abs().amax(1).clamp_min(1e-12).view(view), images, eps)
        self.fooled = torch.zeros(batch, dtype=torch.bool, device=device)
        self.adversarial = images.clone()
        # rows of the batch still attacked, their clean images and classes
        self.state = {"active": torch.arange(batch, device=device), "clean": images, "targets": labels}
        loss, grad, wrong = self.evaluate(x)
        step = torch.full((batch,) + view[1:], 2 * eps, device=device, dtype=images.dtype)
        self.state.update({
            "x": x, "previous": x.clone(), "grad": grad, "loss": loss, "best_loss": loss.clone(), "best_x": x.clone(),
            "best_grad": grad.clone(), "step": step, "increases": torch.zeros(batch, device=device),
            "best_at_last_mark": loss.clone(), "reduced_at_last_mark": torch.ones(batch, dtype=torch.bool, device=device),
        })
        self.retire(wrong)

    def evaluate(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss [A], its gradient in the points [A, C, H, W], misclassified [A]) at the active rows' `points`."""
        points = points.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.classifier(points)
            loss = self.loss_fn(logits, self.state["active"])
            (grad,) = torch.autograd.grad(loss.sum(), points)
        return loss.detach(), grad.detach().contiguous(), logits.detach().argmax(1) != self.state["targets"]

    def advance(self, momentum: float) -> torch.Tensor:
        """One step with momentum from the current iterate; returns which rows the new iterate fools."""
        st, eps = self.state, self.eps
        z = _project(st["x"] + st["step"] * st["grad"].sign(), st["clean"], eps)
        candidate = _project(st["x"] + momentum * (z - st["x"]) + (1 - momentum) * (st["x"] - st["previous"]),
                             st["clean"], eps)
        st["previous"], st["x"] = st["x"], candidate
        new_loss, st["grad"], wrong = self.evaluate(candidate)
        st["increases"] += (new_loss > st["loss"]).float()
        st["loss"] = new_loss
        better = new_loss > st["best_loss"]
        st["best_loss"] = torch.where(better, new_loss, st["best_loss"])
        st["best_x"][better], st["best_grad"][better] = candidate[better], st["grad"][better]
        return wrong

    def reduce_steps(self, window: int) -> None:
        """At a checkpoint, `window` iterations after the last: halves the step size (restarting from the best
        point) where at most 75 % of them increased the loss, or where the step was not reduced at the last
        checkpoint and the best loss has not improved since."""
        st = self.state
        halve = (st["increases"] <= 0.75 * window) | (~st["reduced_at_last_mark"] & (st["best_at_last_mark"] >= st["best_loss"]))
        st["step"][halve] /= 2
        st["x"][halve], st["grad"][halve] = st["best_x"][halve], st["best_grad"][halve]  # restart from the best point
        st["reduced_at_last_mark"] = halve
        st["best_at_last_mark"] = st["best_loss"].clone()
        st["increases"].zero_()

    def retire(self, wrong: torch.Tensor) -> None:
        """Records newly fooled points and drops them from every per-point state tensor."""
        if wrong.any():
            rows = self.state["active"][wrong]
            self.adversarial[rows] = self.state["x"][wrong]
            self.fooled[rows] = True
            keep = ~wrong
            for key in self.state:
                self.state[key] = self.state[key][keep]


def target_classes(ranking: torch.Tensor, labels: torch.Tensor, rank: int) -> torch.Tensor:
    """The `rank`-th highest non-true class of each sample ([B]), from clean logits sorted descending ([B, K])."""
    not_true = ranking != labels[:, None]
    position = torch.cumsum(not_true.int(), dim=1)
    return ranking.gather(1, ((position == rank) & not_true).int().argmax(1, keepdim=True)).squeeze(1)


def apgd_ce(classifier: Classifier, images, labels, *, eps: float, n_iter: int = 100, restarts: int = 1,
            generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Untargeted APGD on the cross-entropy; each restart attacks only points not yet fooled.

    Returns:
        (fooled [B] bool, adversarial images [B, C, H, W]).
    """
    fooled = torch.zeros(len(labels), dtype=torch.bool, device=images.device)
    adversarial = images.clone()
    for _ in range(restarts):
        todo = (~fooled).nonzero().flatten()
        if len(todo) == 0:
            break
        y = labels[todo]
        hit, adv = apgd(classifier, images[todo], y, lambda logits, rows: F.cross_entropy(logits, y[rows], reduction="none"),
                        eps=eps, n_iter=n_iter, generator=generator)
        adversarial[todo[hit]] = adv[hit]
        fooled[todo[hit]] = True
    return fooled, adversarial


def apgd_dlr_targeted(classifier: Classifier, images, labels, *, eps: float, n_iter: int = 100, n_targets: int = 9,
                      restarts: int = 1, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """APGD with the targeted DLR loss against each of the `n_targets` highest non-true classes.

    Targets are ranked by the clean logits; fewer are used when there are fewer classes.

    Returns:
        (fooled [B] bool, adversarial images [B, C, H, W]).
    """
    with torch.no_grad():
        ranking = classifier(images).sort(dim=1, descending=True)[1]
    num_classes = ranking.shape[1]
    fooled = torch.zeros(len(labels), dtype=torch.bool, device=images.device)
    adversarial = images.clone()
    for target_rank in range(1, min(n_targets, num_classes - 1) + 1):
        for _ in range(restarts):
            todo = (~fooled).nonzero().flatten()
            if len(todo) == 0:
                return fooled, adversarial
            y = labels[todo]
            target = target_classes(ranking[todo], y, target_rank)
            hit, adv = apgd(classifier, images[todo], y, lambda logits, rows: dlr_targeted_loss(logits, y[rows], target[rows]),
                            eps=eps, n_iter=n_iter, generator=generator)
            adversarial[todo[hit]] = adv[hit]
            fooled[todo[hit]] = True
    return fooled, adversarial
