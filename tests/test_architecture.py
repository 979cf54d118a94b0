"""The layout is kept true by the code: docs/architecture.md's allowed-imports table, no import circles,
evaluation and training independent, the core below the applications, one registry of methods."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("constrained", "lore")
_MISSING = object()


# ---- the checker -------------------------------------------------------------------------------------------

def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """{dotted module name: file} of every module of `packages` under `root`."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """{module: modules of `packages` it imports}, from every import statement (module level or in a function).

    `from a import b` counts as importing the module a.b when that is a module, else a. A call of
    `import_module`/`__import__` with a string literal counts as an import of that module, and so does each
    "module:attribute" value of a package's `EXPORTS` map (`lore.plugins.lazy_exports`). Imports under
    `if TYPE_CHECKING:` are left out: they never run, they only name types for annotations.
    """
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                     for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            elif isinstance(node, ast.Call) and _string_import(node) is not None:
                names = [_resolve_string(module, is_package, _string_import(node))]
            elif _exports_map(node) is not None:
                names = _exports_map(node)
            else:
                continue
            for name in names:
                while name and name not in files:  # import a.b.c of a package: the deepest module that exists
                    name = name.rpartition(".")[0]
                if name and name.split(".")[0] in packages and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def _string_import(node: ast.Call) -> Optional[str]:
    """The module named by `import_module("x", ...)`, `importlib.import_module("x")` or `__import__("x")` with a
    string literal, else None."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _exports_map(node: ast.AST) -> Optional[list[str]]:
    """The modules an `EXPORTS = {"name": "module:attribute", ...}` assignment names, else None."""
    if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "EXPORTS" for t in node.targets)
            and isinstance(node.value, ast.Dict)):
        return None
    return [value.value.split(":")[0] for value in node.value.values
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and ":" in value.value]


def _resolve_string(module: str, is_package: bool, name: str) -> str:
    """A string import's absolute module: ".x" is relative to the importing module's package."""
    level = len(name) - len(name.lstrip("."))
    if not level:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name[level:]] if name[level:] else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle [a, b, ..., a] of `graph`, or [] when there is none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def read_table(path: Path) -> dict[str, set[str]]:
    """{unit: units it may import} from the "Allowed imports" table of docs/architecture.md."""
    section = path.read_text().split("## Allowed imports")[1].split("\n## ")[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = set(re.findall(r"`([\w.]+)`", cells[2]))
    return table


def unit_of(module: str, units) -> str:
    """The most specific unit naming `module` or one of its packages."""
    candidates = [u for u in units if module == u or module.startswith(u + ".")]
    if not candidates:
        raise AssertionError(f"{module} belongs to no unit of docs/architecture.md's table")
    return max(candidates, key=len)


def table_violations(graph: dict[str, set[str]], table: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        mine = unit_of(module, table)
        for target in sorted(targets):
            theirs = unit_of(target, table)
            if theirs != mine and theirs not in table[mine]:
                found.append(f"{module} imports {target}: {mine} may not import {theirs}")
    return found


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """The rules that hold whatever the table says."""
    def under(module, *units):
        return any(module == u or module.startswith(u + ".") for u in units)

    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if under(module, "lore.evaluation") and under(target, "lore.training") or \
                    under(module, "lore.training") and under(target, "lore.evaluation"):
                found.append(f"{module} imports {target}: evaluation and training are independent")
            if under(module, "lore.methods", "lore.step", "lore.attacks") and \
                    under(target, "lore.training", "lore.evaluation", "lore.cli"):
                found.append(f"{module} imports {target}: the core never imports an application")
            if under(module, "constrained") and under(target, "lore"):
                found.append(f"{module} imports {target}: constrained never imports lore")
    return found


# ---- the checker can fail ----------------------------------------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_circles_forbidden_imports_and_function_level_imports(tmp_path):
    _write(tmp_path, {
        "lore/__init__.py": "",
        "lore/methods.py": "def f():\n    from .training.engine import train\n",
        "lore/training/__init__.py": "",
        "lore/training/engine.py": "from ..evaluation import run\nfrom lore import methods\n",
        "lore/evaluation/__init__.py": "",
        "lore/evaluation/run.py": "import lore.training.engine\nif TYPE_CHECKING:\n    from lore import cli\n",
        "lore/cli.py": "",
        "constrained/__init__.py": "from lore.methods import f\n",
    })
    graph = import_graph(tmp_path)
    assert graph["lore.methods"] == {"lore.training.engine"}  # found inside a function
    assert graph["lore.training.engine"] == {"lore.evaluation.run", "lore.methods"}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and len(cycle) >= 3
    layers = "\n".join(layer_violations(graph))
    assert "lore.training.engine imports lore.evaluation.run" in layers
    assert "lore.evaluation.run imports lore.training.engine" in layers
    assert "lore.methods imports lore.training.engine: the core" in layers
    assert "constrained imports lore.methods" in layers
    assert graph["lore.evaluation.run"] == {"lore.training.engine"}  # the TYPE_CHECKING import is left out
    table = {"lore": set(), "lore.methods": set(), "lore.training": {"lore.methods"}, "lore.evaluation": set(),
             "constrained": set(), "lore.cli": set()}
    assert table_violations(graph, table) == [
        "constrained imports lore.methods: constrained may not import lore.methods",
        "lore.evaluation.run imports lore.training.engine: lore.evaluation may not import lore.training",
        "lore.methods imports lore.training.engine: lore.methods may not import lore.training",
        "lore.training.engine imports lore.evaluation.run: lore.training may not import lore.evaluation",
    ]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


# ---- the code obeys it -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_no_import_circle(graph):
    assert find_cycle(graph) == []


def test_evaluation_and_training_are_independent_and_the_core_stays_below(graph):
    assert layer_violations(graph) == []


def test_every_import_is_allowed_by_the_architecture_table(graph):
    table = read_table(ROOT / "docs" / "architecture.md")
    assert {"constrained", "lore.training", "lore.evaluation", "lore.attacks", "lore.cli"} <= set(table)
    unknown = {u for allowed in table.values() for u in allowed} - set(table)
    assert not unknown, f"the table allows imports of units it does not define: {unknown}"
    for module in graph:
        unit_of(module, table)  # every module is placed
    assert table_violations(graph, table) == []


def test_the_library_never_touches_the_plotting_backend():
    for path in module_files(ROOT).values():
        text = path.read_text()
        assert "matplotlib.use(" not in text, path
        assert "matplotlib.pyplot" not in text, f"{path}: draw on matplotlib.figure.Figure (lore.plotting), not pyplot"


def test_the_main_jobs_plumbing_is_not_in_the_library():
    modules = module_files(ROOT)
    assert "lore.compare" not in modules and "lore.series" not in modules
    assert (ROOT / "examples" / "lore_clip_support" / "compare.py").is_file()
    assert (ROOT / "examples" / "lore_clip_support" / "series.py").is_file()


def test_prompt_templates_are_written_once():
    """The zero-shot prompts of the heads live in lore.data.zero_shot.PROMPT_TEMPLATES, nowhere else."""
    home = ROOT / "lore" / "data" / "zero_shot.py"
    sources = [*module_files(ROOT).values(), *(ROOT / "examples").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    writers = [p for p in sources if p != home and re.search(r"[\"']a photo of (a|the)[^\"'\n]*\{\}", p.read_text())]
    assert writers == []


def test_tests_mirror_the_packages():
    """tests/constrained holds one test module per module of constrained/ (more may test what crosses them:
    convergence, compile, packaging); tests/lore one folder per subpackage."""
    modules = {p.stem for p in (ROOT / "constrained").glob("*.py") if not p.stem.startswith("_")}
    missing = sorted(m for m in modules if not (ROOT / "tests" / "constrained" / f"test_{m}.py").is_file())
    assert missing == [], f"constrained modules without tests/constrained/test_<module>.py: {missing}"
    for package in ("attacks", "data", "models", "training", "evaluation"):
        assert list((ROOT / "tests" / "lore" / package).glob("test_*.py")), f"no tests/lore/{package}/"
    for folder in ("pipeline", "examples", "benchmarks"):
        assert list((ROOT / "tests" / folder).glob("test_*.py"))


# ---- one path per name ------------------------------------------------------------------------------------

def test_the_checker_counts_string_imports(tmp_path):
    """importlib.import_module("...") and __import__("...") with a literal are imports the table must allow: a
    runtime circle through them is a circle."""
    _write(tmp_path, {
        "lore/__init__.py": "",
        "lore/registry.py": "import importlib\ndef f():\n    return importlib.import_module('lore.methods')\n",
        "lore/methods.py": "from .registry import f\n",
        "lore/cli.py": "from importlib import import_module\nx = import_module('.methods', __package__)\n",
        "lore/units.py": "y = __import__('lore.cli')\n",
        "lore/data/__init__.py": "EXPORTS = {'build': 'lore.data.images:build', 'x': 'lore.units:x'}\n",
        "lore/data/images.py": "",
    })
    graph = import_graph(tmp_path)
    assert graph["lore.data"] == {"lore.data.images", "lore.units"}  # the lazy map's modules are imports too
    assert graph["lore.registry"] == {"lore.methods"}
    assert graph["lore.cli"] == {"lore.methods"}
    assert graph["lore.units"] == {"lore.cli"}
    assert find_cycle(graph)[0] in {"lore.registry", "lore.methods"}


def test_no_module_imports_by_string_or_installs_an_import_hook():
    """Import statements only, so that the graph above is complete. The one exception is the plugin loader,
    which imports what a registration names as "module:attribute" (a user's package, or a built-in factory that
    `tests/lore/test_registry.py` resolves)."""
    for module, path in module_files(ROOT).items():
        text = path.read_text()
        for needle in ("import_module", "meta_path", "__import__("):
            if module == "lore.plugins" and needle == "import_module":
                continue
            assert needle not in text, f"{path} uses {needle}: write an import statement"


def test_old_module_paths_are_gone_and_each_public_name_has_one_package():
    import importlib

    for old in ("lore.encoders", "lore.export", "lore.digits", "lore.training.data", "lore.evaluation.datasets"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    import lore.attacks
    import lore.data
    import lore.evaluation
    import lore.training

    shared = (set(lore.evaluation.__all__) & (set(lore.attacks.__all__) | set(lore.data.__all__))) \
        | (set(lore.training.__all__) & {"parse_eps", "build_dataset"})
    assert shared == set()
    for package in (lore, lore.data, lore.evaluation, lore.training, lore.attacks):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"


def test_no_lore_code_special_cases_a_method_by_its_name():
    """A method's behaviour comes from its registry entry (`lore.registry.MethodEntry`), never from comparing its
    name, so a user's method registered beside the built-ins gets the same treatment."""
    import re

    from lore.registry import BUILTIN_METHODS

    names = "|".join(re.escape(n) for n in BUILTIN_METHODS)
    pattern = re.compile(rf"""[=!]=\s*["']({names})["']|["']({names})["']\s*[=!]=""")
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "lore").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


MODULE_LINES = 300  #: the most lines a module of lore/ or constrained/ may have
FUNCTION_LINES = 60  #: the most lines a function or method may span, from `def` to its last line, docstring included


def oversized(root: Path, package: str) -> list[str]:
    """The modules of `package` under `root` longer than `MODULE_LINES` and the functions longer than
    `FUNCTION_LINES`, each as "path: N lines" or "path::name: N lines"."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(root).as_posix()
        if len(source.splitlines()) > MODULE_LINES:
            found.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = node.end_lineno - node.lineno + 1
                if span > FUNCTION_LINES:
                    found.append(f"{name}::{node.name}: {span} lines")
    return found


def test_the_size_checker_finds_long_modules_and_long_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(FUNCTION_LINES))  # def line + 60 lines: 61
    (package / "long_function.py").write_text(f"def f():\n{body}\n\ndef g():\n    return 1\n")
    (package / "long_module.py").write_text("".join(f"x{i} = {i}\n" for i in range(MODULE_LINES + 1)))
    at_limit = "".join(f"        y{i} = {i}\n" for i in range(FUNCTION_LINES - 1))  # def line + 59 lines: 60
    (package / "fine.py").write_text(f"class A:\n    def method(self):\n{at_limit}")
    assert oversized(tmp_path, "pkg") == ["pkg/long_function.py::f: 61 lines", "pkg/long_module.py: 301 lines"]


@pytest.mark.parametrize("package", ["lore", "constrained"])
def test_no_module_is_over_300_lines_and_no_function_over_60(package):
    """One job per module, one step per function: a module that outgrows 300 lines is split by what it does."""
    assert oversized(ROOT, package) == []
