"""LORE's gap to FARE against the number of training batches: does it close, open or hold with more steps?

Reads the `results.json` of main-job runs (`examples/lore_clip.py`) made at several `--steps`, each folder holding
some of the four settings below, and pairs LORE with FARE seed by seed (the gap of seed s is LORE's accuracy
minus FARE's, both trained with seed s), then reports the gaps' mean ± std over the seeds:

- LORE with the `embedded` preset, and with the `paper` preset (`--dual-preset paper`);
- FARE with its authors' one update per adversarial batch, and with K (`--baseline-updates equal`).

    python tools/steps_gap.py --runs A-90 B-90 C-90 A-270 B-270 C-270 A-900 B-900 C-900 \\
        --out docs/figures/steps_gap.png

prints a markdown table (accuracies and gaps per training radius and step count) and draws one panel per
training radius and measure (clean, robust at `--robust-at`), one line per (LORE preset, FARE) pair.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (LORE setting, FARE setting) pairs, one line each
PAIRS = (("lore (embedded)", "fare (1 update)"), ("lore (embedded)", "fare (K updates)"),
         ("lore (paper)", "fare (1 update)"), ("lore (paper)", "fare (K updates)"))


def setting_of(run: dict, results: dict) -> str:
    """A run's setting label: the method with its preset (LORE) or its update count (FARE)."""
    setting = results["setting"]
    if run["method"] == "lore":
        return f"lore ({setting.get('dual_preset', '?')})"
    if run["method"] == "fare-k":  # the main job's equal-updates control beside FARE
        return "fare (K updates)"
    if run["method"] == "fare":
        return "fare (K updates)" if setting.get("baseline_updates") == "equal" else "fare (1 update)"
    return run["method"]


def split_of(results: dict) -> str:
    """The digits part a job evaluated on ("test", "validation"), from its provenance; "unrecorded" for a job
    older than the split."""
    return results.get("provenance", {}).get("data", {}).get("split", "unrecorded")


def collect(folders: list[Path], robust_at: str) -> dict:
    """{(train eps, steps, setting): {seed: (clean, robust)}} over the folders' results.json, all of one split
    (jobs evaluated on different splits are refused: their gaps are not comparable)."""
    found: dict = {}
    splits = {}
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        if results.get("status") != "finished":
            raise ValueError(f"{folder}/results.json is not a finished job")
        splits[folder] = split_of(results)
        if len(set(splits.values())) > 1:
            raise ValueError(f"the jobs were evaluated on different splits: "
                             f"{', '.join(f'{f}: {s}' for f, s in splits.items())}")
        steps = results["setting"]["steps"]
        for run in results["runs"]:
            key = (run["train_eps"], steps, setting_of(run, results))
            found.setdefault(key, {})[run["seed"]] = (run["clean_accuracy"], run["robust_accuracy"][robust_at])
    return found


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def gaps(found: dict) -> dict:
    """{(train eps, steps, pair): {"clean": (mean, std), "robust": (mean, std), "seeds": n}} in points."""
    out = {}
    for (eps, steps, setting) in sorted(found):
        for lore_setting, fare_setting in PAIRS:
            if setting != lore_setting or (eps, steps, fare_setting) not in found:
                continue
            lore, fare = found[(eps, steps, lore_setting)], found[(eps, steps, fare_setting)]
            seeds = sorted(set(lore) & set(fare))
            out[(eps, steps, (lore_setting, fare_setting))] = {
                "clean": mean_std([100 * (lore[s][0] - fare[s][0]) for s in seeds]),
                "robust": mean_std([100 * (lore[s][1] - fare[s][1]) for s in seeds]), "seeds": len(seeds)}
    return out


def table(found: dict, gap: dict, robust_at: str) -> str:
    settings = ("fare (1 update)", "fare (K updates)", "lore (embedded)", "lore (paper)")
    lines = [f"| train eps | batches | {' | '.join(f'{s}: clean / robust {robust_at}' for s in settings)} |",
             "|---|---|" + "---|" * len(settings)]
    for eps, steps in sorted({(e, s) for e, s, _ in found}, key=lambda k: (k[0], k[1])):
        cells = []
        for setting in settings:
            seeds = found.get((eps, steps, setting))
            if not seeds:
                cells.append("–")
                continue
            clean, robust = mean_std([v[0] for v in seeds.values()]), mean_std([v[1] for v in seeds.values()])
            cells.append(f"{clean[0]:.3f} ± {clean[1]:.3f} / {robust[0]:.3f} ± {robust[1]:.3f}")
        lines.append(f"| {eps} | {steps} | {' | '.join(cells)} |")
    lines += ["", f"| train eps | batches | {' | '.join(f'{a} − {b}: clean / robust' for a, b in PAIRS)} |",
              "|---|---|" + "---|" * len(PAIRS)]
    for eps, steps in sorted({(e, s) for e, s, _ in gap}, key=lambda k: (k[0], k[1])):
        cells = []
        for pair in PAIRS:
            g = gap.get((eps, steps, pair))
            cells.append("–" if g is None else f"{g['clean'][0]:+.1f} ± {g['clean'][1]:.1f} / "
                                               f"{g['robust'][0]:+.1f} ± {g['robust'][1]:.1f}")
        lines.append(f"| {eps} | {steps} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(gap: dict, robust_at: str, path: Path, split: str = "test") -> Path:
    from lore.plotting import finish_axes, new_figure, save_figure

    radii = sorted({eps for eps, _, _ in gap}, key=lambda e: float(e.split("/")[0]))
    fig, axes = new_figure(2, len(radii), figsize=(5 * len(radii), 7), squeeze=False)
    styles = {PAIRS[0]: ("tab:green", "-", "o"), PAIRS[1]: ("tab:green", "--", "s"),
              PAIRS[2]: ("tab:purple", "-", "o"), PAIRS[3]: ("tab:purple", "--", "s")}
    for column, eps in enumerate(radii):
        for row, measure in enumerate(("robust", "clean")):
            axis = axes[row][column]
            for pair, (color, line, marker) in styles.items():
                points = sorted((steps, g[measure]) for (e, steps, p), g in gap.items() if e == eps and p == pair)
                if not points:
                    continue
                axis.errorbar([s for s, _ in points], [m for _, (m, _) in points], yerr=[d for _, (_, d) in points],
                              color=color, linestyle=line, marker=marker, markerfacecolor="none", capsize=3,
                              label=f"{pair[0]} − {pair[1]}")
            axis.axhline(0, color="gray", linewidth=0.8)
            axis.set_xscale("log")
            what = f"robust at {robust_at}" if measure == "robust" else "clean"
            axis.set(title=f"trained at {eps}: {what}", xlabel="training batches",
                     ylabel="LORE − FARE, points (mean ± std over seeds)")
            finish_axes(axis)
    fig.suptitle(f"Does LORE's gap to FARE close with more steps? (digits CLIP, {split} digits)")
    return save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="main-job output folders")
    parser.add_argument("--robust-at", default="16/255", help="the evaluation radius of the robust gap")
    parser.add_argument("--out", type=Path, default=Path("steps_gap.png"), help="the figure to write")
    args = parser.parse_args(argv)
    found = collect(args.runs, args.robust_at)
    split = split_of(json.loads((args.runs[0] / "results.json").read_text()))
    gap = gaps(found)
    print(f"split: {split}\n")
    print(table(found, gap, args.robust_at))
    print(f"\nwrote {plot(gap, args.robust_at, args.out, split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
