"""`constrained` installs and runs on torch + cooper-optim alone; every dependency is declared where imported."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIST = "lore-constrained"
BASE = {"torch", "cooper-optim"}
VISION_STACK = ("open_clip", "timm", "torchvision", "sklearn", "matplotlib")
#: import name -> distribution name, where they differ.
DISTRIBUTION_OF = {"open_clip": "open_clip_torch", "sklearn": "scikit-learn", "PIL": "pillow", "cooper": "cooper-optim"}


def _requirements() -> dict[str, set[str]]:
    """{extra ('' for the base): distribution names} of the installed distribution's Requires-Dist."""
    found: dict[str, set[str]] = {}
    for line in importlib.metadata.requires(DIST) or []:
        name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower().replace("_", "-")
        extra = re.search(r'extra == "([^"]+)"', line)
        found.setdefault(extra.group(1) if extra else "", set()).add(name)
    return found


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def _imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("constrained", "lore", "__future__")}


def _third_party_imports(package: str, exclude: Iterable[str] = ()) -> set[str]:
    skip = {ROOT / e for e in exclude}
    return {n for path in (ROOT / package).rglob("*.py") if path not in skip for n in _imports_of(path)}


def test_the_base_install_is_torch_and_cooper():
    assert _requirements()[""] == BASE


#: optional integration modules of `constrained`, each importing one extra's distributions
INTEGRATIONS = {"constrained/lightning.py": "lightning"}


def test_constrained_imports_only_the_base():
    core = {_normalise(DISTRIBUTION_OF.get(n, n)) for n in _third_party_imports("constrained", exclude=INTEGRATIONS)}
    assert core == BASE


def test_each_integration_imports_only_the_base_and_its_extra():
    requirements = _requirements()
    for path, extra in INTEGRATIONS.items():
        imported = {_normalise(DISTRIBUTION_OF.get(n, n)) for n in _imports_of(ROOT / path)}
        assert imported <= BASE | requirements[extra], f"{path} imports beyond the base and the {extra!r} extra"
        assert requirements[extra] <= imported, f"the {extra!r} extra declares what {path} does not import"


#: modules of `lore` that need one more extra than `lore`'s
LORE_INTEGRATIONS = {"lore/models/hf.py": "hf", "lore/models/hf_convert.py": "hf", "lore/data/shards.py": "webdataset"}


def test_each_lore_integration_imports_only_lore_and_its_extra():
    requirements = _requirements()
    by_extra: dict[str, set] = {}
    for path, extra in LORE_INTEGRATIONS.items():
        imported = {_normalise(DISTRIBUTION_OF.get(n, n)) for n in _imports_of(ROOT / path)}
        beyond = requirements[extra] - {"lore-constrained"}
        assert imported <= BASE | requirements["lore"] | beyond, f"{path} imports beyond lore and the {extra!r} extra"
        by_extra.setdefault(extra, set()).update(imported)
        assert "lore-constrained" in {_normalise(n) for n in requirements[extra]}  # an extra on top of lore's
    for extra, imported in by_extra.items():  # every distribution an extra declares is imported by one of its modules
        beyond = requirements[extra] - {"lore-constrained"}
        assert beyond and beyond <= imported, f"the {extra!r} extra declares what its modules do not import"


def test_every_lore_import_is_declared_and_no_declared_dependency_is_unused():
    requirements = _requirements()
    declared = requirements[""] | requirements["lore"]
    imported = {_normalise(DISTRIBUTION_OF.get(n, n)) for n in _third_party_imports("lore", exclude=LORE_INTEGRATIONS)
                | _third_party_imports("constrained", exclude=INTEGRATIONS)}
    assert imported - declared == set(), "imported by lore but not declared in the base or the lore extra"
    assert declared - imported == set(), "declared but never imported by lore"
    assert {"open-clip-torch", "timm", "torchvision", "scikit-learn", "matplotlib"} <= requirements["lore"]
    assert "lore-constrained" in {_normalise(n) for n in requirements["dev"]}  # dev pulls lore and benchmark in


def test_constrained_runs_where_the_vision_stack_cannot_be_imported():
    """Every public name of constrained imports, and a small problem solves, with the vision stack blocked."""
    script = textwrap.dedent(f"""
        import sys

        for blocked in {VISION_STACK!r}:
            sys.modules[blocked] = None  # `import blocked` now raises ModuleNotFoundError, as if not installed
        import torch
        import constrained
        for name in constrained.__all__:
            getattr(constrained, name)
        from constrained import Constraint, FixedMargin, PrimalDual, ScalarMultiplier, sq_l2

        torch.manual_seed(0)
        theta = torch.nn.Parameter(torch.zeros(2))
        target = torch.tensor([[3.0, 0.0]])
        bound = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="near-origin")
        pd = PrimalDual(torch.optim.SGD([theta], lr=0.05), {{bound: ScalarMultiplier()}}, dual_lr=0.05)

        def closure():
            out = theta.unsqueeze(0)
            return (out - target).pow(2).sum(), [bound.observe(out, torch.zeros_like(out))]

        for _ in range(3000):
            report = pd.step(closure)
        # min ||theta - (3, 0)||^2 s.t. ||theta||^2 <= 1: theta* = (1, 0), lambda* = 2
        assert abs(theta[0].item() - 1.0) < 2e-2 and abs(theta[1].item()) < 1e-3, theta
        assert abs(report.as_dict()["near-origin/multiplier_mean"] - 2.0) < 0.1, report.as_dict()
        assert not any(m.split(".")[0] in {VISION_STACK!r} for m, v in sys.modules.items() if v is not None)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
