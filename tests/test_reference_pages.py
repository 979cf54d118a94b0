"""docs/results.md, docs/lore.md and docs/performance.md are references of today's code: every results table
names the command and the commit that produced it, and the history of measurements lives in docs/log.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("results.md", "lore.md", "performance.md")
DECIMAL = re.compile(r"\d\.\d{2,}")
#: the shape of a history entry: a section dated like the log's ("## 2026-12-05: ..."), or one marked superseded
DATED_SECTION = re.compile(r"^#+ .*(\b20\d\d-\d\d-\d\d\b|\(superseded)", re.M | re.I)


def results_tables(text: str) -> list[tuple[int, str]]:
    """(line index, the text from the section's heading to the table) of each table with >= 3 measured numbers;
    a generated block (<!-- ...:begin --> ... end) is a specification, not a result."""
    lines = text.splitlines()
    found, generated, heading, i = [], False, 0, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<!--") and ":begin" in line:
            generated = True
        elif line.startswith("<!--") and ":end" in line:
            generated = False
        elif line.startswith("#"):
            heading = i
        elif line.startswith("|"):
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            cells = [c for row in lines[start:i] for c in row.split("|") if DECIMAL.search(c)]
            if len(cells) >= 3 and not generated:
                found.append((start, "\n".join(lines[heading:start])))
            continue
        i += 1
    return found


@pytest.mark.parametrize("page", PAGES)
def test_every_results_table_names_its_command_and_commit(page):
    tables = results_tables((ROOT / "docs" / page).read_text())
    assert tables, f"docs/{page} has no results table"
    for line, context in tables:
        assert re.search(r"commit [0-9a-f]{7}", context), f"docs/{page} line {line + 1}: no commit named before the table"
        assert "python " in context, f"docs/{page} line {line + 1}: no command before the table"


@pytest.mark.parametrize("page", PAGES)
def test_reference_pages_hold_no_dated_or_superseded_sections(page):
    """A measurement that today's code no longer reproduces is an entry of docs/log.md (dated, or marked
    superseded), not a section of a reference page."""
    text = (ROOT / "docs" / page).read_text()
    assert DATED_SECTION.findall(text) == [], f"docs/{page} holds a history entry: move it to docs/log.md"


def test_the_log_is_what_the_history_checker_would_refuse_and_it_stays_out_of_the_navigation():
    log = (ROOT / "docs" / "log.md").read_text()
    assert len(DATED_SECTION.findall(log)) >= 3
    assert "log.md" not in (ROOT / "mkdocs.yml").read_text()
    assert "(log.md)" in (ROOT / "docs" / "results.md").read_text()  # linked from the results instead


def test_the_checker_finds_a_table_without_its_commit():
    page = "## A\n\nCommand: `python x.py`\n\n| a | b |\n|---|---|\n| 0.12 | 0.34 |\n| 0.56 | 0.78 |\n"
    (line, context), = results_tables(page)
    assert "commit" not in context
    assert results_tables("<!-- t:begin -->\n| 0.12 | 0.34 | 0.56 |\n<!-- t:end -->\n") == []


SPLIT = re.compile(r"\b(test|validation|former held-out) split\b", re.I)
SEEDS = re.compile(r"(?<!--)\bseeds? \d")  # "seeds 0–2" in the prose, not the command's --seeds flag


def test_every_results_table_of_the_results_page_names_its_split_and_seeds():
    """Tables said neither which digits they were measured on nor which seeds; the preset was chosen on the same
    digits. Each now names its split (test, validation, or the former held-out split of a table not yet re-run)
    and its seeds."""
    for line, context in results_tables((ROOT / "docs" / "results.md").read_text()):
        assert SPLIT.search(context), f"docs/results.md line {line + 1}: no split named before the table"
        assert SEEDS.search(context), f"docs/results.md line {line + 1}: no seeds named before the table"


def test_the_split_checker_finds_a_table_without_its_split():
    page = "## A\n\nCommand (commit abcdef0): `python x.py --seeds 3`\n\n| a | b |\n|---|---|\n| 0.12 | 0.34 |\n| 0.5 | 0.78 |\n"
    (_, context), = results_tables(page)
    assert not SPLIT.search(context) and not SEEDS.search(context)
