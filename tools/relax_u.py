"""Which digits a resilient LORE relaxed, and why: u(x) = lambda(x) / price on the evaluation split.

For every relaxed run (`lore train --relax quadratic`) under `--runs` (the main job's `--sweep relax` folders), this
rebuilds the run's multiplier network from its last.pt and evaluates, on the split the run was evaluated on:

- lambda(x) on phi_0(x), and u(x) = lambda(x) / price, the relaxation the problem chose for each digit
  (`constrained.relaxation.Quadratic`: h(u) = price u^2 / 2, so h'(u) = lambda at the optimum), also as a share
  of the digit's margin rho ||phi_0(x)||^2;
- the cost of holding that digit's constraint: how far FARE, trained without it at the same radius and seed (a run
  in the same folder), moved the digit's embedding, ||phi_FARE(x) - phi_0(x)||^2 / ||phi_0(x)||^2.

It writes a JSON summary (per radius and seed: the share of digits relaxed, mean and largest u, the mean u per
class, and Spearman's rank correlation of u with FARE's deviation) and a figure (u against FARE's deviation, one
panel per radius; and the mean u per digit class).

    python tools/relax_u.py --runs runs/relax-test --out docs/figures/relax_u.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch

from lore.data.digits import load_digits_images
from lore.jsonio import write_json
from lore.methods import build_method
from lore.models.build import build_model
from lore.plotting import finish_axes, new_figure, save_figure
from lore.training.config import TrainConfig
from lore.training.probe import rank_correlation
from lore.units import format_eps

RELAXED = 1e-6  #: u above this counts as relaxed (a projected link puts exact zeros where lambda is 0)


def load_run(folder: Path) -> tuple[TrainConfig, dict]:
    """(config, checkpoint state) of a finished `lore train` run folder."""
    config = TrainConfig.from_json(folder / "config.json")
    state = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
    return config, state


def encoder_of(config: TrainConfig, state: Optional[dict] = None):
    """The run's starting encoder phi_0, or with `state` (its last.pt) its fine-tuned encoder; in eval mode on the
    CPU."""
    encoder = build_model(config.model, config.pretrained, config.image_size, cache_dir=Path(config.cache_dir).expanduser(),
                          seed=config.split_seed, device=torch.device("cpu")).encoder.eval()
    if state is not None:
        encoder.load_state_dict(state["encoder"])
    return encoder


def split_images(config: TrainConfig, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of the split the run's probe read (test or validation): images [N, 3, S, S], labels [N]."""
    part = load_digits_images(image_size).splits(config.split_seed).part(config.probe_split)
    return part.images, part.labels


def multiplier_values(config: TrainConfig, state: dict, features: torch.Tensor) -> torch.Tensor:
    """lambda(x) [N] of the run's multiplier (rebuilt from its config, loaded from last.pt) on phi_0(x) [N, D]."""
    method = build_method(config.method, config)
    multiplier = method.multiplier(features.shape[1])
    name = method.constraint.name
    saved = state["dual"]["primal_dual"]["multipliers"]
    multiplier.load_state_dict({key[len(name) + 1:]: value for key, value in saved.items()
                                if key.startswith(name + ".")})
    with torch.no_grad():
        return multiplier(features).double()


def relative_deviation(encoder, reference_features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """||phi(x) - phi_0(x)||^2 / ||phi_0(x)||^2 per image, [N]."""
    with torch.no_grad():
        moved = encoder(images).double()
    base = reference_features.double()
    return (moved - base).pow(2).sum(1) / base.pow(2).sum(1).clamp_min(1e-12)


def analyse(runs: Path) -> list[dict]:
    """One record per relaxed run under `runs`/runs: its radius, seed, price, u(x) and FARE's deviation."""
    folders = sorted(p for p in (runs / "runs").iterdir() if (p / "last.pt").is_file())
    configs = {p: TrainConfig.from_json(p / "config.json") for p in folders}
    fare = {(c.eps, c.seed): p for p, c in configs.items() if c.method == "fare"}
    records = []
    for folder, config in configs.items():
        if config.method != "lore" or config.relax != "quadratic":
            continue
        if (config.eps, config.seed) not in fare:
            raise ValueError(f"{folder}: no FARE run at eps {format_eps(config.eps)}, seed {config.seed} in {runs}")
        state = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
        reference = encoder_of(config)
        images, labels = split_images(config, config.image_size or 16)
        with torch.no_grad():
            features = reference(images)
        u = multiplier_values(config, state, features) / config.relax_price
        fare_config, fare_state = load_run(fare[(config.eps, config.seed)])
        cost = relative_deviation(encoder_of(fare_config, fare_state), features, images)
        margin = config.rho * features.double().pow(2).sum(1)  # m(x) = rho ||phi_0(x)||^2, the bound u relaxes
        records.append({"folder": str(folder), "train_eps": format_eps(config.eps), "eps": config.eps,
                        "seed": config.seed, "price": config.relax_price, "split": config.probe_split,
                        "u": u, "margin": margin, "fare_deviation": cost, "labels": labels})
    if not records:
        raise ValueError(f"{runs} holds no relaxed LORE run (lore train --relax quadratic) with its last.pt")
    return records


def summary(record: dict) -> dict:
    """The JSON-ready numbers of one run."""
    u, labels = record["u"], record["labels"]
    by_class = {str(c): round(float(u[labels == c].mean()), 6) for c in sorted(set(labels.tolist()))}
    return {"train_eps": record["train_eps"], "seed": record["seed"], "price": record["price"],
            "split": record["split"], "digits": len(u), "relaxed_share": round(float((u > RELAXED).double().mean()), 4),
            "u_mean": round(float(u.mean()), 6), "u_max": round(float(u.max()), 6),
            "u_over_margin_mean": round(float((u / record["margin"]).mean()), 4), "u_by_class": by_class,
            "rank_correlation_with_fare_deviation": round(rank_correlation(u, record["fare_deviation"]), 4)}


def plot(records: list[dict], path: Path) -> Path:
    """Per radius: u(x) against FARE's deviation (every seed's digits); and the mean u per digit class."""
    radii = sorted({r["eps"] for r in records})
    figure, axes = new_figure(1, len(radii) + 1, figsize=(3.2 * (len(radii) + 1), 3.0), squeeze=False)
    axes = axes[0]
    for ax, eps in zip(axes[:-1], radii):
        for r in (r for r in records if r["eps"] == eps):
            ax.scatter(r["fare_deviation"].numpy(), r["u"].numpy(), s=4, alpha=0.35, label=f"seed {r['seed']}")
        ax.set(title=f"train eps {format_eps(eps)}", xlabel="FARE's ||phi - phi_0||^2 / ||phi_0||^2",
               ylabel="u(x) = lambda(x) / price")
    ax = axes[-1]
    for eps in radii:
        rows = [r for r in records if r["eps"] == eps]
        classes = sorted(set(rows[0]["labels"].tolist()))
        means = [float(torch.cat([r["u"][r["labels"] == c] for r in rows]).mean()) for c in classes]
        ax.plot(classes, means, marker="o", label=format_eps(eps))
    ax.set(title="mean u(x) per digit", xlabel="digit", ylabel="mean u(x)")
    finish_axes(*axes)
    return save_figure(figure, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="a --sweep relax output folder (its runs/)")
    parser.add_argument("--out", type=Path, required=True, help="the figure (PNG); the JSON goes beside it")
    args = parser.parse_args(argv)
    records = analyse(args.runs)
    rows = [summary(r) for r in records]
    plot(records, args.out)
    write_json(args.out.with_suffix(".json"), {"runs": str(args.runs), "rows": rows})
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k != "u_by_class"}))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
