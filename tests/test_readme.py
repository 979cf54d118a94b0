"""The README's set-up commands and CI agree."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(readme: str) -> list[str]:
    blocks = readme.split("```bash\n")[1:]
    return [block.split("```")[0].strip() for block in blocks]


def test_readme_setup_has_the_main_job_and_test_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up")[1].split("\n## ")[0]
    commands = _commands(setup)
    run_main = [c for c in commands if "python examples/lore_clip.py" in c]
    run_tests = [c for c in commands if "pytest" in c]
    assert len(run_main) == 1 and len(run_tests) == 1
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert run_tests[0] in ci_lines


def test_readme_says_how_to_install_cpu_only_torch():
    setup = (ROOT / "README.md").read_text().split("## Set-up")[1].split("\n## ")[0]
    assert any("download.pytorch.org/whl/cpu" in c for c in _commands(setup))
