"""Progress output: a live bar on a terminal, a few whole lines in a log."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from lore.progress import LineProgress, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_quarter_lines_and_a_final_line_without_carriage_returns():
    stream = io.StringIO()
    bar = progress(160, "lore eps=48/255", unit="batch", stream=stream)
    assert isinstance(bar, LineProgress)
    for _ in range(160):
        bar.update(1)
        bar.set_postfix({"loss": "0.1"})
    bar.close()
    bar.close()  # closing twice prints once
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split(": ")[1].split(" (")[0] for line in lines[:3]] == ["40/160 batch", "80/160 batch", "120/160 batch"]
    assert lines[3].startswith("lore eps=48/255: done 160/160 batch in ") and lines[3].endswith("(loss 0.1)")
    assert len(lines) == 4


def test_an_unfinished_phase_says_where_it_stopped():
    stream = io.StringIO()
    with LineProgress(100, "fare", stream=stream, quarters=False) as bar:
        bar.update(30)
    assert stream.getvalue().startswith("fare: stopped at 30/100 it in ")


def test_a_resumed_phase_skips_quarters_already_passed():
    stream = io.StringIO()
    bar = LineProgress(100, "lore", initial=60, stream=stream)
    bar.update(10)
    bar.update(5)
    assert stream.getvalue().splitlines() == ["lore: 75/100 it"]  # the 75 % mark only; 25 and 50 % were passed before


@given(total=st.integers(1, 500), steps=st.lists(st.integers(1, 50), max_size=40))
def test_at_most_three_quarter_lines_and_one_final_line(total, steps):
    stream = io.StringIO()
    bar = LineProgress(total, "x", stream=stream)
    for n in steps:
        bar.update(n)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 4 and ("done" in lines[-1] or "stopped at" in lines[-1])


def test_a_terminal_gets_a_tqdm_bar_and_a_disabled_display_prints_nothing():
    from tqdm import tqdm

    bar = progress(10, "x", stream=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    stream = io.StringIO()
    silent = progress(10, "x", enabled=False, stream=stream)
    silent.update(10)
    silent.close()
    assert stream.getvalue() == ""
