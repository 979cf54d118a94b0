"""Every public name of constrained and lore is documented, and every docstring example runs as written."""

from __future__ import annotations

import doctest
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_PACKAGES = ("constrained", "constrained.lightning", "lore", "lore.attacks", "lore.data", "lore.models", "lore.training",
                   "lore.evaluation")


def _modules() -> list[str]:
    names = []
    for package in ("constrained", "lore"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_name_has_a_docstring(package):
    module = importlib.import_module(package)
    undocumented = []
    for name in module.__all__:
        value = getattr(module, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and not (inspect.getdoc(value) or "").strip():
            undocumented.append(name)
    assert undocumented == [], f"{package}: public names without a docstring"


def test_docstring_examples_run_as_written():
    attempted = 0
    for name in _modules():
        module = importlib.import_module(name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
        assert result.failed == 0, f"{name}: {result.failed} docstring example(s) failed"
        attempted += result.attempted
    assert attempted >= 15  # the examples of constraint, divergences, margins, reference, ... did run


def test_the_api_reference_lists_every_public_name():
    """docs/api/*.md are what tools/api_pages.py writes from the packages' __all__ (run it after adding a name)."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import api_pages

    for page_name, package in api_pages.PAGES.items():
        written = (ROOT / "docs" / "api" / f"{page_name}.md").read_text()
        assert written == api_pages.page(package), f"docs/api/{page_name}.md is stale: python tools/api_pages.py"
        module = importlib.import_module(package)
        for name in module.__all__:
            assert f".{name}" in written, f"{package}.{name} is missing from docs/api/{page_name}.md"


def _resolves(dotted: str) -> bool:
    """Whether `a.b.c` is an importable module or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("page", ["lore.md", "constrained.md", "evaluation.md", "training.md"])
def test_every_dotted_name_a_page_cites_exists(page):
    """A reference page that names `lore.x.y` or `constrained.x` names something today's code has."""
    import re

    text = (ROOT / "docs" / page).read_text()
    cited = {m.group(1) for m in re.finditer(r"`((?:lore|constrained)(?:\.[A-Za-z_]\w*)+)", text)}
    assert cited, f"{page} cites no name"
    missing = sorted(name for name in cited if not _resolves(name))
    assert missing == [], f"docs/{page} cites names the code does not have: {missing}"
