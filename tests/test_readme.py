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


def test_the_readme_lists_every_example():
    """examples/neyman_pearson.py was missing from the examples table."""
    readme = (ROOT / "README.md").read_text()
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert f"`examples/{example.name}`" in readme, example.name


def test_the_main_jobs_run_time_has_one_source():
    """The README said "about 4 min" and "under a minute"; the job's --help said "4-8 minutes" and "about 60 s".
    The README (from docs/results.md's budget) is the one source; the job points to its plan line."""
    import re

    source = (ROOT / "examples" / "lore_clip.py").read_text()
    assert not re.search(r"\d+(-\d+)? ?(minutes|min\b)|about \d+ ?s\b", source)
    assert "about 4 min for the default, under a minute for" in (ROOT / "README.md").read_text().replace("\n", " ")


def test_the_cpu_install_pins_a_torch_and_torchvision_pair():
    """torch 2.13 with torchvision 0.28 installed with exit 0, then the job died: operator torchvision::nms does
    not exist. The install names one pair; lore checks the pair when a command starts (lore.devices)."""
    setup = (ROOT / "README.md").read_text().split("## Set-up")[1].split("\n## ")[0]
    cpu = next(c for c in _commands(setup) if "download.pytorch.org/whl/cpu" in c)
    assert '"torch==2.14.*" "torchvision==0.29.*"' in cpu
