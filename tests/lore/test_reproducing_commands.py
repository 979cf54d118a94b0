"""The GPU commands of docs/reproducing.md and docs/training.md resolve to the Table 6 row they name, with the
paper's dual (`lore.presets.PAPER`); a command with a real model that names no row is refused."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lore.cli import build_parser, config_from_args
from lore.presets import PAPER, PRESET_FIELDS
from lore.table6 import COMMON, MODELS, ROWS, row
from lore.units import parse_eps

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW_NAME = re.compile(r"#\s*Table 6:\s*(LORE|FARE)\^(\d+),\s*([^,]+),\s*([A-Za-z0-9-]+)")


def commands(page: Path) -> list[tuple[str, str]]:
    """(the comment line just above, the command with its continuations joined) of every `lore train` in the
    page's bash blocks."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        lines = block.replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            if "lore train" in line and "..." not in line:
                found.append((lines[i - 1] if i else "", line))
    return found


def _config(command: str):
    words = shlex.split(command)
    words = words[words.index("train"):]
    return config_from_args(build_parser().parse_args(words))


def _dataset(config) -> str:
    if config.data.startswith("torchvision:CIFAR10"):
        return "CIFAR10"
    if config.classes == "imagenet100" or "imagenet100" in config.data:
        return "ImageNet-100"
    return "ImageNet" if "imagenet" in config.data else config.data


def _named(comment: str):
    match = ROW_NAME.search(comment)
    if match is None:
        return None
    method, eps, model, dataset = match.groups()
    return method.lower(), row(model.strip(), dataset, int(eps))


ALL = [(page.name, comment, command) for page in (DOCS / "reproducing.md", DOCS / "training.md")
       for comment, command in commands(page)]


def test_the_pages_have_table_6_commands():
    named = [c for _, c, _ in ALL if ROW_NAME.search(c)]
    assert len(named) >= 8, named  # reproducing.md: 6 + training.md: 2


@pytest.mark.parametrize("page,comment,command", ALL, ids=[f"{p}:{c[:40]}" for p, c, _ in ALL])
def test_each_command_resolves_to_the_table_6_row_it_names(page, comment, command):
    config = _config(command)  # parsed by the real parser, whatever it does
    named = _named(comment)
    if "--plan" in shlex.split(command):  # prints the memory a step needs and exits: trains nothing
        return
    if config.model.startswith("digits"):
        assert named is None and "not a Table 6 row" in comment, (page, comment)
        return
    assert named is not None, f"{page}: a real-model command must name its Table 6 row: {command}"
    method, expected = named
    assert config.method == method
    assert (config.model, config.pretrained or "") == MODELS[expected.model] or (
        expected.model.startswith("DINOv2") and config.model == MODELS[expected.model][0] and config.pretrained)
    assert _dataset(config) == expected.dataset
    assert config.eps == pytest.approx(parse_eps(f"{expected.eps}/255"))
    assert (config.epochs, config.batch_size, config.lr, config.max_steps) == (expected.epochs, expected.batch_size,
                                                                                 expected.lr, None)
    for name, value in COMMON.items():
        if name == "primal_steps":  # K: LORE's (Table 8); FARE and TeCoA take their authors' one update
            assert config.updates_per_batch == (1 if method in ("fare", "tecoa") else value), (method, command)
            continue
        assert getattr(config, name) == value, name
    if method == "lore":
        assert config.rho == expected.rho
        assert config.dual_preset == "paper" and config.dual == "network" and config.adaptive_margin
        assert {name: getattr(config, name) for name in PRESET_FIELDS} == PAPER.values()
        assert config.penalty == 0.0


def test_table_6_agrees_with_the_papers_text():
    """Spot checks against the paper's Table 6 as printed (App. C)."""
    assert row("CLIP ViT-B/32", "CIFAR10", 2).rho == 0.01
    assert row("CLIP ViT-B/32", "ImageNet", 4).epochs == 3 and row("CLIP ViT-B/32", "ImageNet", 2).epochs == 2
    assert row("DINOv2 ViT-S/14", "ImageNet", 8).rho == 0.05 and row("DINOv2 ViT-B/14", "ImageNet", 16).batch_size == 64
    assert row("CLIP ViT-B/16", "ImageNet-100", 4).rho == 0.2 and row("CLIP ConvNeXt-B", "ImageNet-100", 8).batch_size == 64
    assert len(ROWS) == 30 and {r.lr for r in ROWS} == {1e-5}
    with pytest.raises(ValueError, match="no row for 'CLIP ViT-B/16' on 'ImageNet' at eps 4"):
        row("CLIP ViT-B/16", "ImageNet", 4)


def _lines(page: Path) -> list[str]:
    """Every command line of the page's bash blocks, continuations joined."""
    return [line for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)
            for line in block.replace("\\\n", " ").splitlines()]


def _option(words: list[str], name: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == name]


def test_every_model_reproducing_evaluates_is_trained_by_one_of_its_commands():
    """A plan a GPU user can follow: each run folder a `lore eval` command reads (--model, --baseline) is the
    --output of a `lore train` command on the same page; other models are pretrained names."""
    lines = _lines(DOCS / "reproducing.md")
    trained = {out for line in lines if "lore train" in line for out in _option(shlex.split(line), "--output")}
    evaluated = set()
    for line in (line for line in lines if line.lstrip().startswith("lore eval")):
        words = shlex.split(line)
        for value in _option(words, "--model") + _option(words, "--baseline"):
            evaluated.update(name for name in value.split(",") if "/" in name)
    assert len(evaluated) >= 6, evaluated  # ImageNet-100's two and Table 3's four
    assert evaluated <= trained, f"evaluated but never trained: {sorted(evaluated - trained)}"
    # the eval commands resolve (flags exist, values valid) as a user would type them
    for line in (line for line in lines if line.lstrip().startswith("lore eval") and "--benchmark" not in line):
        words = shlex.split(line)
        build_parser().parse_args(words[1:])
