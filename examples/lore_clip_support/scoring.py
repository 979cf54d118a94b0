"""The one score that chooses settings on the validation digits (the `embedded` preset, `tools/preset_selection.py`;
the resilient price and margins, `--sweep relax`): clean and robust accuracy at the training radius, averaged."""

from __future__ import annotations

from typing import Iterable, Mapping

from lore.units import parse_eps


def scored_radius(train_eps: str, eval_eps: Iterable[str]) -> str:
    """The evaluation radius (a label such as "16/255") a training radius is scored at: the largest evaluated
    radius not above it, else the smallest (48/255 is scored at 32/255 when the job evaluates up to 32/255)."""
    radii = sorted(eval_eps, key=parse_eps)
    below = [e for e in radii if parse_eps(e) <= parse_eps(train_eps) + 1e-12]
    return below[-1] if below else radii[0]


def selection_score(clean: float, robust: Mapping[str, float], train_eps: str) -> float:
    """(clean accuracy + robust accuracy at `scored_radius`) / 2, for one run or one mean over seeds."""
    return (clean + robust[scored_radius(train_eps, robust)]) / 2
