"""The main job, the eps series: FARE, naive regularization and LORE over training radii.

With no arguments it runs offline on a CPU on an embedded default:

1. loads a small CLIP-style model trained on the real digit images bundled
   with scikit-learn — an image tower and a text tower over captions such as
   "a photo of the digit seven" — as the frozen reference phi_0 (its weights
   ship with the package, so every machine starts from the same phi_0;
   --retrain-reference builds it here instead); it is pretrained on the
   train and validation digits, never on the 454 test digits (the split:
   docs/lore.md);
2. fine-tunes its image encoder with FARE, naive regularization and LORE at
   three training radii (`lore train`'s engine: Algorithm 1, K = 5), over
   `--seeds` training seeds;
3. evaluates every model on all test digits (`--eval-split validation`:
   the validation digits, for choosing settings): zero-shot clean accuracy,
   robust accuracy (worst case of APGD-CE and APGD-DLR-T) at several radii,
   and the share of images whose clean embedding stays within the margin;
4. prints the series the paper's way (mean ± std over seeds, each method's
   difference to FARE in points, ↑/↓) and writes into --out: results.json,
   series.png (accuracy vs training radius), constraint.png (held-out clean
   deviation, margin satisfaction and lambda over training at the largest
   radius: paper Fig. 6, 7, 9), clean_over_training.png (Fig. 1a) and
   accuracy.png; each run's folder holds its own training_curves.png.

    python examples/lore_clip.py                  # one seed (the plan line prints the expected time)
    python examples/lore_clip.py --seeds 3        # the table of docs/results.md (about 3x longer)
    python examples/lore_clip.py --quick          # two radii, small budget
    python examples/lore_clip.py --sweep rho,lambda --seeds 3   # Fig. 3 (rho sweep) and Fig. 1b (both fronts)
    python examples/lore_clip.py --sweep K,tolerance,dual --seeds 3  # Table 8 (K), Table 13 (margins), Fig. 8 (dual)
    python examples/lore_clip.py --black-box --seeds 3   # Square (Table 9) and Gaussian noise (Fig. 12/13)
    python examples/lore_clip.py --fixed-lambda   # + naive regularization at LORE's own final lambda

Its plan line gives the expected time from then on, measured on the running machine (a speed probe
rescales the reference machine's costs; docs/results.md gives how close it came); after each model the
time left is re-measured from how long the finished models really took. Output to a file or a
CI log is whole lines (one per quarter of a training and per finished phase), not progress-bar redraws.

Interrupted (Ctrl-C, SIGTERM), it writes a results.json marked "interrupted" and exits 130; the same
command with --resume reuses finished trainings and evaluations and resumes the interrupted training from
its checkpoint.

With real weights and data (GPUs; torchrun for several):

    python examples/lore_clip.py --model ViT-B-32 --pretrained openai \\
        --train-data /data/imagenet100/train --eval-data /data/imagenet100/val

runs the paper's setting with its defaults (training eps 1, 2, 4 /255, rho 0.1,
K = 5, AdamW lr 1e-5, batch 448, 5 epochs, the paper's dual preset; evaluation at
1, 2, 4, 8 /255 with 100 APGD iterations). The embedded default uses the
`embedded` dual preset instead, and says so (docs/lore.md tables both).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from lore.evaluation.config import split_list
from lore.jsonio import write_json
from lore.presets import DUAL_PRESETS
from lore.registry import method_names
from lore.vocabulary import BaselineUpdates, DualFeatures, DualLink, DualOptimizer, DualSignal, ProbeSplit, choices
from lore.training.checkpoint import CheckpointError
from lore_clip_support.black_box import run_black_box
from lore_clip_support.compare import RunInterrupted
from lore_clip_support.job import EMBEDDED, Job, check_method_labels, settings_for
from lore_clip_support.modes import run_series
from lore_clip_support.relax import run_relax_sweep
from lore_clip_support.sweeps import SWEEPS, run_sweeps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/lore_clip"), help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="two training radii, small budget, same code path (the plan line prints the expected time)")
    parser.add_argument("--model", default=EMBEDDED, help="digits-clip (embedded), an open_clip name, local-dir:PATH, or "
                        "hf:PATH (a local transformers CLIP or SigLIP folder)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or weights file")
    parser.add_argument("--train-data", default=None, help="training images (ImageFolder or torchvision:NAME:ROOT)")
    parser.add_argument("--eval-data", default=None, help="held-out images for evaluation")
    parser.add_argument("--methods", default=None,
                        help=f"comma list among {', '.join(method_names())}; fare-k (tecoa-k): FARE (TeCoA) with K updates "
                        "per adversarial batch, the equal-updates control, beside the authors' one update (default: "
                        "fare,fare-k,naive,lore; fare,naive,lore with --baseline-updates equal)")
    parser.add_argument("--train-eps", default=None,
                        help="comma list of training radii (default: 16,32,48 /255 embedded; 1,2,4 /255 real)")
    parser.add_argument("--eval-eps", default=None, help="comma list (default: 8,16,32 /255 embedded; 1,2,4,8 /255 real)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per (method, radius): --seed .. --seed+N-1")
    parser.add_argument("--rho", type=float, default=None, help="LORE margin (default: 0.1)")
    parser.add_argument("--naive-weight", type=float, default=1.0, help="lambda of naive regularization")
    parser.add_argument("--dual-preset", default=None, choices=tuple(DUAL_PRESETS),
                        help="LORE's dual settings (default: embedded with the embedded model, paper with real weights; "
                        "docs/lore.md tables both); the dual flags below override single values")
    parser.add_argument("--dual-lr", type=float, default=None, help="dual learning rate (default: the preset's)")
    parser.add_argument("--dual-hidden", type=int, default=None, help="hidden width of the dual network (default: the preset's)")
    parser.add_argument("--dual-signal", default=None, choices=choices(DualSignal),
                        help="what LORE's dual step ascends on: violation (the paper's) or rate (default: the preset's)")
    parser.add_argument("--dual-link", default=None, choices=choices(DualLink),
                        help="lambda(x) from the dual network's output: softplus (the paper's) or projected (default: the preset's)")
    parser.add_argument("--dual-features", default=None, choices=choices(DualFeatures),
                        help="what the dual network sees of phi_0(x): raw (the paper's), standardized or unit-rms "
                        "(default: the preset's)")
    parser.add_argument("--dual-optimizer", default=None, choices=choices(DualOptimizer),
                        help="dual ascent: sgd (Algorithm 1's plain ascent) or adam (default: the preset's)")
    parser.add_argument("--dual-init", type=float, default=None, help="initial lambda(x) (default: the preset's)")
    parser.add_argument("--dual-beta1", type=float, default=None, help="Adam dual: beta1 (default: the preset's)")
    parser.add_argument("--dual-beta2", type=float, default=None, help="Adam dual: beta2 (default: the preset's)")
    parser.add_argument("--violation-rate", type=float, default=None,
                        help="rate dual signal: the tolerated share outside the margin (default: the preset's)")
    parser.add_argument("--penalty", type=float, default=None,
                        help="LORE: c > 0 adds (c/2) relu(violation)^2 per sample (augmented Lagrangian; default 0: "
                        "the paper's Lagrangian)")
    parser.add_argument("--primal-steps", type=int, default=None, help="K (default: the preset's, 5)")
    parser.add_argument("--baseline-updates", choices=choices(BaselineUpdates), default=None,
                        help="FARE and TeCoA: 'authors' (default) takes their authors' one encoder update per "
                        "adversarial batch; 'equal' takes K like LORE (the equal-updates control)")
    parser.add_argument("--steps", type=int, default=None, help="training batches per model (default: 90 embedded, 16 quick)")
    parser.add_argument("--probe-every", type=int, default=None,
                        help="held-out probe every N batches during training (default: a quarter of --steps; the "
                        "clean-accuracy curves and time-to-accuracy table read these probes)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="linear lr warm-up batches before the cosine decay (default: 0)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs with real data (when --steps is not given)")
    parser.add_argument("--batch-size", type=int, default=None, help="per process (default: 64 embedded, 448 real)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW lr (default: 1e-3 embedded, 1e-5 real)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="held-out images evaluated (default: all 454 test digits embedded, 100 quick; 1000 real)")
    parser.add_argument("--apgd-iter", type=int, default=None,
                        help="APGD iterations (default: 100 real; 10 embedded, which ranks the methods as 100 do: docs/results.md)")
    parser.add_argument("--apgd-targets", type=int, default=None,
                        help="APGD-DLR-T target classes (default: 9 real, AutoAttack's; 3 embedded: docs/results.md)")
    parser.add_argument("--sweep", default=None,
                        help="comma list of rho (Fig. 3), lambda (naive; with rho: Fig. 1b's fronts), K (Table 8), "
                        "tolerance (fixed margins, Table 13), dual (network/linear/scalar, Fig. 8): trains each family "
                        "at the largest --train-eps over --seeds, with FARE; or relax alone: one resilient price "
                        "against the best rho per radius at every --train-eps (choose with --eval-split validation, "
                        "then report with --selected-on)")
    parser.add_argument("--selected-on", type=Path, default=None,
                        help="--sweep relax: train only the price and per-radius margins a validation run of the "
                        "sweep chose (its --out folder), on --eval-split")
    parser.add_argument("--relax-rhos", default=None, help="--sweep relax: the hard margins tried (default 0.03,0.1,0.3)")
    parser.add_argument("--relax-prices", default=None,
                        help="--sweep relax: the quadratic prices tried, from rho 0.1 (default 3,10,30,100)")
    parser.add_argument("--black-box", action="store_true",
                        help="the series' models (trained where --out lacks them) under Square and Gaussian noise "
                        "(Table 9, Fig. 12/13)")
    parser.add_argument("--square-queries", type=int, default=500, help="Square attack queries per image (--black-box)")
    parser.add_argument("--fixed-lambda", action="store_true",
                        help="series: also train naive regularization with lambda fixed at each LORE run's final mean "
                        "lambda (isolates what the adaptive multiplier adds)")
    parser.add_argument("--cache-dir", default="~/.cache/lore", help="where a retrained embedded reference model is cached")
    parser.add_argument("--retrain-reference", action="store_true",
                        help="embedded model: build phi_0 on this machine (replacing its cached copy) instead of "
                        "loading the weights shipped with the package")
    parser.add_argument("--eval-split", choices=choices(ProbeSplit), default="test",
                        help="embedded digits: evaluate (and probe during training) on the test digits (default: "
                        "reporting) or on the validation digits (choosing settings); the split: docs/lore.md")
    parser.add_argument("--seed", type=int, default=0, help="first training seed")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the held-out split, the evaluation subset and the embedded reference model "
                        "(fixed across training seeds, so every seed is evaluated on the same images)")
    parser.add_argument("--device", default="", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted job in --out: finished trainings and evaluations are reused, "
                        "an interrupted training resumes from its checkpoint")
    args = parser.parse_args(argv)
    if args.square_queries < 1:
        parser.error(f"--square-queries must be >= 1, got {args.square_queries}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.apgd_targets is not None and args.apgd_targets < 1:
        parser.error(f"--apgd-targets must be >= 1, got {args.apgd_targets}")
    if args.dual_hidden is not None and args.dual_hidden < 1:
        parser.error(f"--dual-hidden must be >= 1, got {args.dual_hidden}")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        parser.error(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    for name in ("dual_beta1", "dual_beta2", "violation_rate"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
    if args.penalty is not None and not args.penalty >= 0:
        parser.error(f"--penalty must be >= 0, got {args.penalty}")
    if args.probe_every is not None and args.probe_every < 1:
        parser.error(f"--probe-every must be >= 1, got {args.probe_every}")
    if args.primal_steps is not None and args.primal_steps < 1:
        parser.error(f"--primal-steps must be >= 1, got {args.primal_steps}")
    if args.dual_init is not None and not args.dual_init >= 0:
        parser.error(f"--dual-init must be >= 0, got {args.dual_init}")
    if args.dual_lr is not None and not args.dual_lr >= 0:
        parser.error(f"--dual-lr must be >= 0, got {args.dual_lr}")
    if args.retrain_reference:
        if args.model != EMBEDDED:
            parser.error("--retrain-reference applies to the embedded model (digits-clip) only")
        if args.pretrained not in (None, "retrained"):
            parser.error(f"--retrain-reference contradicts --pretrained {args.pretrained}")
        args.pretrained = "retrained"
    if args.eval_split != "test" and (args.eval_data or args.train_data or "digits") != "digits":
        parser.error(f"--eval-split {args.eval_split}: only the embedded digits have a validation part")
    if args.methods is None:
        args.methods = "fare,naive,lore" if args.baseline_updates == "equal" else "fare,fare-k,naive,lore"
    problem = check_method_labels(split_list(args.methods), args.baseline_updates)
    if problem:
        parser.error(problem)
    kinds = split_list(args.sweep or "")
    unknown = [k for k in kinds if k not in SWEEPS and k != "relax"]
    if unknown:
        parser.error(f"--sweep takes {sorted(SWEEPS)} (comma list) or relax, got {unknown}")
    if "relax" in kinds and len(kinds) > 1:
        parser.error("--sweep relax runs alone (it trains across every --train-eps radius)")
    for name in ("selected_on", "relax_rhos", "relax_prices"):
        if getattr(args, name) is not None and kinds != ["relax"]:
            parser.error(f"--{name.replace('_', '-')} belongs to --sweep relax")
    for name in ("relax_rhos", "relax_prices"):  # parsed once here: the sweep reads the tuples
        given = getattr(args, name)
        if given is None:
            continue
        try:
            values = tuple(float(v) for v in split_list(given))
        except ValueError:
            values = ()
        if not values or not all(0 < v < float("inf") for v in values):
            parser.error(f"--{name.replace('_', '-')} takes a comma list of numbers > 0, got {given!r}")
        setattr(args, name, values)
    return args


def main(argv=None) -> int:
    """Runs the job; on SIGTERM/SIGINT it stops, writes an "interrupted" results.json and returns 130."""
    args = parse_args(argv)
    from lore.devices import torch_pair_problem

    problem = torch_pair_problem()  # a mismatched pair fails minutes later, at the first torchvision operator
    if problem is not None:
        print(f"lore_clip: {problem}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # outside training too (training checkpoints first)
    try:
        return run(args)
    except (RunInterrupted, KeyboardInterrupt) as stop:
        where = str(stop) if isinstance(stop, RunInterrupted) else "interrupted outside training (nothing was lost)"
        write_json(args.out / "results.json", {"status": "interrupted", "reason": where})
        print(f"\n{where}\nno results were written; continue with the same command and --resume", file=sys.stderr)
        return 130
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"lore_clip: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    s = settings_for(args)
    if s["train_data"] is None:
        raise ValueError("--train-data is required with real weights (an ImageFolder or torchvision:NAME:ROOT)")
    args.out.mkdir(parents=True, exist_ok=True)
    job = Job(args, s)
    if args.sweep == "relax":
        return run_relax_sweep(job)
    if args.sweep:
        return run_sweeps(job)
    if args.black_box:  # reads the series' models and leaves its results.json alone
        return run_black_box(job)
    (args.out / "results.json").unlink(missing_ok=True)  # a results.json describes a finished series, and only that
    return run_series(job)


if __name__ == "__main__":
    sys.exit(main())
