"""Choosing the `embedded` preset's values on the validation digits: one score per candidate setting.

Reads the `results.json` of main-job runs made with `--eval-split validation --methods lore --seeds 3` (one folder
per candidate; FARE's folders may be given too, for the table) and scores each candidate seed by seed:

    score = mean over the training radii of (clean accuracy + robust accuracy at the training radius) / 2,

the robust accuracy taken at the largest evaluation radius not above the training radius (48/255 is scored at
32/255, the largest the job evaluates). The rule, fixed before the runs: the candidate with the highest mean
score is chosen, unless it beats the current preset by less than the larger of their two seed spreads (std over
seeds), in which case the current value stays (a change needs evidence beyond seed noise).

    python tools/preset_selection.py embedded=runs/val/embedded lr1e-2=runs/val/lr1e-2 ... --current embedded

prints a markdown table: per training radius clean / robust / in margin (mean over seeds), and the score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from lore_clip_support.scoring import scored_radius, selection_score  # noqa: E402


def seed_scores(results: dict, method: str) -> dict[int, float]:
    """Score of `method`'s runs in one results.json, per training seed."""
    by_seed: dict[int, list[float]] = {}
    for run in results["runs"]:
        if run["method"] != method:
            continue
        score = selection_score(run["clean_accuracy"], run["robust_accuracy"], run["train_eps"])
        by_seed.setdefault(run["seed"], []).append(score)
    return {seed: statistics.fmean(values) for seed, values in by_seed.items()}


def candidate_row(name: str, results: dict, method: str) -> tuple[list[str], float, float]:
    """The table cells of one candidate, its mean score and the score's std over seeds."""
    scores = list(seed_scores(results, method).values())
    if not scores:
        raise SystemExit(f"{name}: no {method} runs in its results.json")
    cells = [name]
    for row in results["series"]:
        if row["method"] != method:
            continue
        at = scored_radius(row["train_eps"], row["robust_accuracy"])
        cells.append(f"{row['clean_accuracy'][0]:.3f} / {row['robust_accuracy'][at][0]:.3f} / "
                     f"{row['within_margin'][0]:.3f}")
    mean, std = statistics.fmean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0
    return cells + [f"{mean:.4f} ± {std:.4f}"], mean, std


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidates", nargs="+", help="NAME=FOLDER (a main-job --out holding results.json)")
    parser.add_argument("--method", default="lore", help="the method whose settings are chosen (default: lore)")
    parser.add_argument("--current", required=True, help="NAME of the candidate with the preset's current values")
    args = parser.parse_args(argv)
    rows, scores = [], {}
    for item in args.candidates:
        name, _, folder = item.partition("=")
        results = json.loads((Path(folder) / "results.json").read_text())
        if results.get("provenance", {}).get("data", {}).get("split") != "validation":
            raise SystemExit(f"{name}: {folder} was not evaluated on the validation split (--eval-split validation)")
        method = args.method if any(r["method"] == args.method for r in results["runs"]) else results["runs"][0]["method"]
        cells, mean, std = candidate_row(name, results, method)
        rows.append(cells)
        if method == args.method:
            scores[name] = (mean, std)
    if args.current not in scores:
        raise SystemExit(f"--current {args.current}: not among the {args.method} candidates {sorted(scores)}")
    radii = [r["train_eps"] for r in results["series"] if r["method"] == method]
    print("| setting | " + " | ".join(f"{e}: clean / robust / in margin" for e in radii) + " | score (mean ± std) |")
    print("|---" * (len(radii) + 2) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    best = max(scores, key=lambda n: scores[n][0])
    current = scores[args.current]
    if best != args.current and scores[best][0] - current[0] <= max(scores[best][1], current[1]):
        print(f"\nchosen: {args.current} (the best, {best}, leads by {scores[best][0] - current[0]:.4f}, within the "
              f"larger seed std {max(scores[best][1], current[1]):.4f})")
    else:
        print(f"\nchosen: {best}" + (f" (leads {args.current} by {scores[best][0] - current[0]:.4f})"
                                     if best != args.current else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
