"""The README's set-up commands and CI agree."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(readme: str) -> list[str]:
    blocks = readme.split("```bash\n")[1:]
    return [block.split("```")[0].strip() for block in blocks]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up")[1].split("\n## ")[0]
    commands = _commands(setup)
    assert len(commands) == 2
    run_main, run_tests = commands
    assert "python examples/lore_clip.py" in run_main
    assert "pytest" in run_tests
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert run_tests in ci_lines
