"""Progress display that suits where the output goes: a live bar on a terminal, a few plain lines in a log.

A tqdm bar redraws itself with carriage returns; written to a file or a CI log, every redraw becomes text
(a `--quick` log used to be mostly bar refreshes). `progress(...)` returns a tqdm bar when the stream is a
terminal and a `LineProgress` otherwise, which prints one line when a quarter of the work is done and one
when the phase ends (with its duration and last postfix), nothing in between.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

QUARTERS = (0.25, 0.5, 0.75)


class LineProgress:
    """tqdm's `update` / `set_postfix` / `close` interface, printing whole lines only.

    Args:
        total: units of work in the phase.
        desc: what the phase is, e.g. "lore eps=48/255".
        initial: units already done (a resumed run).
        unit: name of one unit ("batch", "img").
        stream: where lines go (default: sys.stderr, as tqdm).
        quarters: also print a line at 25, 50 and 75 % (long phases such as training).
    """

    def __init__(self, total: int, desc: str, *, initial: int = 0, unit: str = "it", stream: Optional[TextIO] = None,
                 quarters: bool = True) -> None:
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self.postfix = ""
        self.closed = False
        self._pending = [q for q in QUARTERS if q * self.total > self.n] if quarters and self.total else []

    def update(self, n: int = 1) -> None:
        """Adds `n` finished units; prints a line when a quarter mark is passed."""
        self.n += n
        passed = [q for q in self._pending if self.n >= q * self.total]
        if passed:
            self._pending = [q for q in self._pending if q not in passed]
            self._line(f"{self.n}/{self.total} {self.unit}")

    def set_postfix(self, values: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        """Remembers the latest statistics; they appear in the next line."""
        merged = {**(values or {}), **kwargs}
        self.postfix = ", ".join(f"{k} {v}" for k, v in merged.items())

    def close(self) -> None:
        """Prints the phase's last line: finished, or how far it got."""
        if self.closed:
            return
        self.closed = True
        state = "done" if self.n >= self.total else "stopped at"
        self._line(f"{state} {self.n}/{self.total} {self.unit} in {time.perf_counter() - self.started:.1f} s")

    def _line(self, text: str) -> None:
        suffix = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {text}{suffix}", file=self.stream, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent:
    """A disabled display (another rank, progress=False)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, values: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, desc: str, *, initial: int = 0, unit: str = "it", enabled: bool = True,
             quarters: bool = True, stream: Optional[TextIO] = None):
    """A tqdm bar on a terminal, a `LineProgress` elsewhere, nothing when not `enabled`.

    Args:
        total: units of work.
        desc: the phase's name.
        initial: units already done.
        unit: name of a unit.
        enabled: False shows nothing (e.g. ranks other than 0).
        quarters: non-terminal output: also a line at each quarter (else only the final line).
        stream: the output stream (default sys.stderr).
    """
    if not enabled:
        return _Silent()
    stream = stream if stream is not None else sys.stderr
    if _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=quarters,
                    file=stream)
    return LineProgress(total, desc, initial=initial, unit=unit, stream=stream, quarters=quarters)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
