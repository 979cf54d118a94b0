"""Demographic parity inside PyTorch Lightning: `constrained.lightning.PrimalDualModule` with Lightning's Trainer.

A small MLP classifies synthetic rows whose sensitive attribute A shifts two features; the constraint keeps
the rate of positive predictions of each group within `--bound` of the overall rate,

    max_a |P(y_hat = 1 | A = a) - P(y_hat = 1)| <= bound,

observed per minibatch through the sigmoid proxy (the dual step sees the true rates). Lightning runs the
loop, logs the `StepReport` (``constrained/...`` in `trainer.callback_metrics` and any logger), writes
checkpoints that carry the multipliers, and runs DDP (``--devices 2`` uses two CPU processes, gloo). Prints
held-out accuracy and parity of the unconstrained and the constrained network.

The rows are shuffled by a `ResumableLoader` (a seeded permutation per epoch that the checkpoints record
with their position), so `--resume DIR/constrained/checkpoints/…ckpt --epochs N` ends with the weights
and multipliers of an uninterrupted N-epoch run, from an end-of-epoch or a mid-epoch checkpoint. SIGTERM
(to the process or its group) stops at the next batch, writes DIR/<fit>/interrupted.ckpt and exits 143;
`--resume` continues the constrained fit (the unconstrained baseline is refitted).

    python examples/lightning_fairness.py [--epochs 8] [--devices 2] [--out DIR] [--resume CKPT]

Needs ``pip install ".[lightning]"`` (part of ".[dev]").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import TensorDataset

from constrained import PrimalDual, demographic_parity, parity_difference
from constrained.lightning import PrimalDualModule, ResumableLoader, SaveOnSigterm

#: the exit status after SIGTERM (128 + 15, as a shell reports a process ended by it)
SIGTERM_EXIT = 143


def make_data(rows: int, seed: int) -> TensorDataset:
    """`rows` synthetic rows (x [rows, 8] float32, y [rows] float32 in {0, 1}, group [rows] int64 in {0, 1})."""
    generator = torch.Generator().manual_seed(seed)
    group = (torch.rand(rows, generator=generator) < 0.4).long()
    x = torch.randn(rows, 8, generator=generator)
    x[:, 0] += 1.2 * group
    x[:, 1] -= 0.8 * group
    logits = 1.5 * x[:, 0] - x[:, 1] + x[:, 2] * x[:, 3] + torch.sin(2 * x[:, 4]) + 0.5 * torch.randn(rows, generator=generator)
    return TensorDataset(x, (logits > 0.3).float(), group)


class FairClassifier(PrimalDualModule):
    """An 8-32-1 MLP under demographic parity <= `bound` (unconstrained when `bound` is None).

    Args:
        bound: the parity bound, or None for a plain (unconstrained) fit through the same loop.
        lr: Adam's learning rate.
        dual_lr: the dual ascent step of the group multipliers.
        batches_per_dual: training batches per dual step (one primal step per batch).
    """

    def __init__(self, bound: float | None = 0.02, lr: float = 5e-3, dual_lr: float = 0.1,
                 batches_per_dual: int = 1) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        # unconstrained: the same loop with a bound no network can violate (parity differences are <= 1)
        self.parity = demographic_parity(2, 1.0 if bound is None else bound)
        self.lr, self.dual_lr, self.batches = lr, dual_lr, batches_per_dual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

    def configure_primal_dual(self) -> PrimalDual:
        return PrimalDual(torch.optim.Adam(self.net.parameters(), lr=self.lr), {self.parity: self.parity.multiplier()},
                          dual_lr=self.dual_lr, primal_steps_per_dual=self.batches)

    def constrained_step(self, batch, batch_idx):
        x, y, group = batch
        scores = self(x)
        return F.binary_cross_entropy_with_logits(scores, y), [self.parity.observe_scores(scores, group)]


def evaluate(model: FairClassifier, data: TensorDataset) -> dict[str, float]:
    """Accuracy and parity difference of hard predictions on `data`."""
    x, y, group = data.tensors
    with torch.no_grad():
        predictions = (model(x) > 0).float()
    return {"accuracy": float((predictions == y).float().mean()), "parity": parity_difference(predictions, group, 2)}


def trainer(epochs: int, devices: int, out: Path | None, callbacks: list) -> pl.Trainer:
    """A CPU Trainer; DDP (gloo) when `devices` > 1 (the ResumableLoader shards the rows by rank itself);
    checkpoints in `out` when given."""
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=devices,
                      strategy="ddp" if devices > 1 else "auto", use_distributed_sampler=False, logger=False,
                      enable_checkpointing=out is not None, default_root_dir=out, callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False, deterministic=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--bound", type=float, default=0.02)
    parser.add_argument("--dual-lr", type=float, default=0.1, help="dual ascent step of the group multipliers")
    parser.add_argument("--rows", type=int, default=20_000, help="training rows (as many held out)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--devices", type=int, default=1, help="CPU processes (> 1: Lightning's DDP with gloo)")
    parser.add_argument("--out", type=Path, default=None, help="checkpoints and results.json here")
    parser.add_argument("--resume", type=Path, default=None, help="a Lightning checkpoint to resume from")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test = make_data(args.rows, args.seed), make_data(args.rows, args.seed + 1)
    results = {}
    for name, bound in (("unconstrained", None), ("constrained", args.bound)):
        pl.seed_everything(args.seed, verbose=False)
        model = FairClassifier(bound, dual_lr=args.dual_lr)
        folder = None if args.out is None else args.out / name
        on_sigterm = SaveOnSigterm(folder / "interrupted.ckpt") if folder is not None else None
        fit = trainer(args.epochs, args.devices, folder, [on_sigterm] if on_sigterm else [])
        try:
            fit.fit(model, ResumableLoader(train, args.batch_size, seed=args.seed),
                    ckpt_path=args.resume if bound is not None else None, weights_only=True)  # never unpickle
        except SIGTERMException:
            if fit.global_rank == 0:
                resume = (f"continue with --resume {on_sigterm.path}" if bound is not None else
                          "a rerun repeats this fit (--resume continues the constrained fit)")
                saved = f"wrote {on_sigterm.path}; {resume}" if on_sigterm else "nothing saved (no --out)"
                print(f"stopped by SIGTERM in the {name} fit at step {fit.global_step}: {saved}", file=sys.stderr)
            sys.exit(SIGTERM_EXIT)
        if fit.global_rank != 0:
            continue
        results[name] = {**evaluate(model, test), "train": evaluate(model, train),
                         "multipliers": model.primal_dual.multipliers.state_dict()[f"{model.parity.name}.weight"]
                         .flatten().tolist(), "primal_steps": model.primal_dual.primal_steps,
                         "rank_disagreement": model.rank_disagreement}
    if not results:
        return  # not rank 0
    print(f"held-out ({args.rows} rows), demographic parity bound {args.bound}:")
    for name, r in results.items():
        print(f"  {name:<14} accuracy {r['accuracy']:.4f}  parity {r['parity']:.4f}  (training parity {r['train']['parity']:.4f})")
    print(f"  multipliers (upper side per group, lower side per group): {[round(v, 3) for v in results['constrained']['multipliers']]}")
    if args.devices > 1:
        print(f"  {args.devices} DDP ranks; largest multiplier difference between ranks: {results['constrained']['rank_disagreement']}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps({**results, "bound": args.bound, "devices": args.devices}, indent=2))
        print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
