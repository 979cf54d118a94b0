"""Figure helpers shared by training curves, evaluation reports and the examples.

Figures are `matplotlib.figure.Figure` objects drawn straight to files: no pyplot, so importing or calling
this module never selects or changes the plotting backend of the process that uses the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from matplotlib.figure import Figure

from .registry import BUILTIN_METHODS


def new_figure(nrows: int = 1, ncols: int = 1, **subplots):
    """(figure, axes) like `pyplot.subplots`, but owned by the caller and not registered with pyplot.

    Args:
        nrows, ncols: the grid of axes.
        **subplots: `figsize=(w, h)` (inches) goes to the figure; the rest (`squeeze`, `sharex`, ...) to
            `Figure.subplots`.
    """
    figsize = subplots.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Figure, path: Union[str, Path]) -> Path:
    """Lays out and writes a figure (PNG, 110 dpi) with `lore.files`' writer (atomic, never through a symbolic
    link); returns the path."""
    import io

    from .files import write_bytes_atomic

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    write_bytes_atomic(Path(path), buffer.getvalue())
    return Path(path)


def finish_axes(*axes) -> None:
    """Grid on each axis, and a legend where something is labelled."""
    for ax in axes:
        ax.grid(alpha=0.3)
        legend(ax)


def legend(ax) -> None:
    """A legend only when the axis holds labelled artists (an empty legend box says nothing)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def mark_empty(ax, message: str) -> None:
    """Writes `message` across an axis that has nothing to show (e.g. no multiplier in FARE)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")


def count_label(count: int, noun: str) -> str:
    """'1 seed', '3 seeds': a count and its noun for legends and lines ('(1 seeds)' read wrong)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


#: one colour per method, the same in every figure (matplotlib's tab10 hues)
METHOD_COLORS = dict(zip(("reference", *BUILTIN_METHODS), ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red",
                                                        "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")))


def method_color(label: str) -> Optional[str]:
    """The colour of a method in every figure: by its name (case-insensitive; a label that starts with a known
    method name, such as "lore rho=0.1", takes that method's colour); None (matplotlib's cycle) otherwise."""
    method = _method_of(label)
    return None if method is None else METHOD_COLORS[method]


#: one marker per method, so that two methods drawn on the same values both stay visible: hollow markers of
#: different shapes nest instead of covering each other
METHOD_MARKERS = dict(zip(("reference", *BUILTIN_METHODS), ("x", "o", "s", "^", "D", "v", "P", "X", "<", ">")))
#: one line style per method for the same reason: a dashed line over a solid one shows both
METHOD_LINESTYLES = dict(zip(("reference", *BUILTIN_METHODS), ("--", "-", "--", "-.", ":", "-", "--", "-.", ":", "-")))


EQUAL_UPDATES_SUFFIX = "-k"
"""A run label NAME-k (the main job's "fare-k") is method NAME with K updates per adversarial batch, the
equal-updates control: drawn in NAME's colour with a filled marker and a dotted line."""


def _method_of(label: str) -> Optional[str]:
    name = label.lower()
    if name.endswith(EQUAL_UPDATES_SUFFIX):
        name = name[: -len(EQUAL_UPDATES_SUFFIX)]
    for method in sorted(METHOD_COLORS, key=len, reverse=True):  # "tecoa-l2" before "tecoa"
        if name == method or name.startswith(method + " ") or name.startswith(method + "("):
            return method
    return None


def method_style(label: str) -> dict:
    """`Axes.plot` / `errorbar` keywords of a method in every comparison figure: its colour (`method_color`), its
    marker (hollow) and its line style, so that methods with equal values are still told apart. Unknown labels
    get matplotlib's defaults and a hollow circle."""
    method = _method_of(label)
    if method is None:
        return {"marker": "o", "markerfacecolor": "none"}
    if label.lower().endswith(EQUAL_UPDATES_SUFFIX):
        return {"color": METHOD_COLORS[method], "marker": METHOD_MARKERS[method], "linestyle": ":"}
    return {"color": METHOD_COLORS[method], "marker": METHOD_MARKERS[method], "linestyle": METHOD_LINESTYLES[method],
            "markerfacecolor": "none"}


def dodge(index: int, count: int, span: float, share: float = 0.015) -> float:
    """The horizontal offset of the index-th of `count` series over an axis spanning `span` data units: series
    at the same x sit side by side (each `share` of the span apart), so equal error bars do not hide each other."""
    return (index - (count - 1) / 2) * share * (span or 1.0)
