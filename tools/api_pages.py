"""Writes docs/api/*.md: one mkdocstrings entry per public name of each package (its `__all__`).

The lazy packages (`lore`, `lore.models`, ...) serve their names through PEP 562, which a static reader
cannot see, so every name is listed with its home module. `tests/test_docstrings.py` checks the pages are
current; after adding a public name run `python tools/api_pages.py`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"constrained": "constrained", "lightning": "constrained.lightning", "lore": "lore", "attacks": "lore.attacks", "data": "lore.data",
         "models": "lore.models", "training": "lore.training", "evaluation": "lore.evaluation"}


def owner(home: str) -> str:
    """The page documenting objects defined in module `home`: the most specific package of `PAGES`."""
    packages = [p for p in PAGES.values() if home == p or home.startswith(p + ".")]
    return max(packages, key=len)


def page(package: str) -> str:
    """The markdown of `package`'s API page: its own objects in full, re-exported ones as links."""
    module = importlib.import_module(package)
    summary = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [f"# `{package}`", "", summary, ""]
    elsewhere, constants = [], []
    for name in module.__all__:
        value = getattr(module, name)
        home = getattr(value, "__module__", None)
        if not (callable(value) and home and home.split(".")[0] in ("constrained", "lore")):
            constants.append(name)
        elif owner(home) == package:
            lines += [f"::: {home}.{name}", ""]
        else:
            page_name = next(k for k, v in PAGES.items() if v == owner(home))
            elsewhere.append(f"- `{package}.{name}`: documented in [`{owner(home)}`]({page_name}.md#{home}.{name})")
    if elsewhere:
        lines += ["## Also served here", "", *elsewhere, ""]
    if constants:
        lines += ["## Constants", "", *[f"- `{package}.{name}`" for name in constants], ""]
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    for name, package in PAGES.items():
        (ROOT / "docs" / "api" / f"{name}.md").write_text(page(package))


if __name__ == "__main__":
    main()
