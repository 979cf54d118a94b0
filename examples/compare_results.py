"""How much two runs of the main job differ: the same command on two machines, or with two thread counts.

    python examples/compare_results.py runs/A/results.json runs/B/results.json \\
        --labels "2 threads" "1 thread" --plot variation.png

Matches the runs of both files by (method, training eps, seed), prints every accuracy of both and their
difference in points, the largest absolute difference per quantity, and draws B against A (one panel per
quantity; points off the diagonal are the variation). Both files must describe finished jobs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load_runs(path: Path) -> dict[tuple[str, str, int], dict]:
    """{(method, train_eps, seed): run} of a finished results.json."""
    payload = json.loads(Path(path).read_text())
    if payload.get("status") != "finished":
        raise ValueError(f"{path} does not describe a finished job (status {payload.get('status')!r})")
    return {(r["method"], r["train_eps"], r["seed"]): r for r in payload["runs"]}


def quantities(run: dict) -> dict[str, float]:
    """The compared numbers of one run: clean, robust per eval eps, within margin."""
    values = {"clean": run["clean_accuracy"], "in margin": run["within_margin"]}
    values.update({f"robust {eps}": value for eps, value in run["robust_accuracy"].items()})
    return values


def differences(a: dict, b: dict) -> list[tuple[tuple, str, float, float]]:
    """[(run key, quantity, value in A, value in B)] over the runs both files hold."""
    shared = [key for key in a if key in b]
    if not shared:
        raise ValueError("the two files share no (method, train_eps, seed) run")
    return [(key, name, value, quantities(b[key])[name]) for key in shared for name, value in quantities(a[key]).items()]


def plot(rows, labels: tuple[str, str], path: Path) -> Path:
    from lore.plotting import finish_axes, method_color, new_figure, save_figure

    names = list(dict.fromkeys(name for _, name, _, _ in rows))
    fig, axes = new_figure(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for method in dict.fromkeys(key[0] for key, *_ in rows):
            points = [(x, y) for key, n, x, y in rows if n == name and key[0] == method]
            ax.scatter(*zip(*points), label=method, color=method_color(method), s=18)
        ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
        worst = max(abs(y - x) for _, n, x, y in rows if n == name)
        ax.set(title=f"{name} (max |diff| {100 * worst:.1f} pts)", xlabel=labels[0], ylabel=labels[1],
               xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    finish_axes(*axes[0])
    fig.suptitle(f"the same job, {labels[0]} vs {labels[1]}: every model's held-out numbers")
    return save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--labels", nargs=2, default=("A", "B"))
    parser.add_argument("--plot", type=Path, default=None, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        rows = differences(load_runs(args.a), load_runs(args.b))
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"compare_results: {error}", file=sys.stderr)
        return 2
    print(f"{'method':<24}{'train eps':<10}{'seed':<6}{'quantity':<16}{args.labels[0]:>10}{args.labels[1]:>10}{'diff (pts)':>12}")
    for (method, eps, seed), name, x, y in rows:
        print(f"{method:<24}{eps:<10}{seed:<6}{name:<16}{x:>10.3f}{y:>10.3f}{100 * (y - x):>+12.1f}")
    print("\nlargest absolute difference, in points:")
    for name in dict.fromkeys(n for _, n, _, _ in rows):
        print(f"  {name}: {max(100 * abs(y - x) for _, n, x, y in rows if n == name):.1f}")
    if args.plot:
        print(f"wrote {plot(rows, tuple(args.labels), args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
