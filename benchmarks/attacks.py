"""Our APGD against torchattacks' (time and robust accuracy), and the evaluation cascade against attacking
every point with every attack."""

from __future__ import annotations

import torch

import lore
from lore.attacks import apgd_ce
from lore.evaluation import EvalSettings, robust_accuracy
from timing import interleaved_medians


def digits_classifier(device):
    torch.manual_seed(0)
    parts = lore.load_digits_images(16).splits(0)
    train, test = parts.pretraining(), parts.test
    encoder = lore.small_digits_encoder(embed_dim=32, width=16)
    head = lore.pretrain_classifier(encoder, train, steps=200, seed=0)
    model = torch.nn.Sequential(encoder, head).to(device).eval().requires_grad_(False)
    return model, test.images.to(device), test.labels.to(device)


def attack_benchmarks(args, device) -> dict:
    import torchattacks

    model, x, y = digits_classifier(device)
    n = 150 if args.quick else len(y)
    x, y = x[:n], y[:n]
    eps, n_iter = 8 / 255, (20 if args.quick else 100)
    results = {}

    def ours():
        fooled, _ = apgd_ce(model, x, y, eps=eps, n_iter=n_iter, generator=torch.Generator(device=device).manual_seed(0))
        results["ours"] = 1 - fooled.float().mean().item()

    def theirs():
        adversarial = torchattacks.APGD(model, norm="Linf", eps=eps, steps=n_iter, n_restarts=1, loss="ce", seed=0)(x, y)
        with torch.no_grad():
            results["theirs"] = (model(adversarial).argmax(1) == y).float().mean().item()

    t = interleaved_medians({"apgd_ours": ours, "apgd_torchattacks": theirs}, max(3, args.repeats // 2), device)

    settings = EvalSettings(eps=[eps], n_iter=n_iter, n_targets=9, progress=False)

    def cascade():
        results["cascade"] = robust_accuracy(model, x, y, eps, settings)

    def naive():  # both attacks on every point, no skipping
        g = torch.Generator(device=device).manual_seed(0)
        a, _ = apgd_ce(model, x, y, eps=eps, n_iter=n_iter, generator=g)
        b, _ = apgd_dlr_targeted_all(model, x, y, eps, n_iter, g)
        results["naive"] = 1 - (a | b).float().mean().item()

    t.update(interleaved_medians({"eval_cascade": cascade, "eval_naive": naive}, 3, device))
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    return {
        "seconds": t,
        "apgd_time_over_torchattacks": t["apgd_ours"] / t["apgd_torchattacks"],
        "apgd_robust_acc_ours": results["ours"],
        "apgd_robust_acc_torchattacks": results["theirs"],
        "apgd_robust_acc_minus_torchattacks": 100 * (results["ours"] - results["theirs"]),
        "eval_time_over_naive": t["eval_cascade"] / t["eval_naive"],
        "eval_model_clean_accuracy": clean,
        "eval_model_robust_accuracy": results["cascade"]["apgd-ce+apgd-t"],
        "eval_naive_robust_accuracy": results["naive"],
    }


def apgd_dlr_targeted_all(model, x, y, eps, n_iter, generator):
    """APGD-DLR-T against all 9 targets on every point (no point is ever skipped): the naive evaluation."""
    from lore.attacks.auto_pgd import apgd, dlr_targeted_loss, target_classes

    with torch.no_grad():
        ranking = model(x).sort(dim=1, descending=True)[1]
    fooled = torch.zeros(len(y), dtype=torch.bool, device=x.device)
    for rank in range(1, 10):
        target = target_classes(ranking, y, rank)
        hit, _ = apgd(model, x, y, lambda logits, rows: dlr_targeted_loss(logits, y[rows], target[rows]), eps=eps, n_iter=n_iter,
                      generator=generator)
        fooled |= hit
    return fooled, None
