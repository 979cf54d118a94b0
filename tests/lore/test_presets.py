"""One definition of LORE's dual defaults: the paper's preset is App. C / Algorithm 1, and the CLI, TrainConfig,
`lore.lore()` with `RobustStep`, and docs/lore.md's table all resolve to it (or to the named embedded preset)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import lore
from constrained import MultiplierNetwork
from lore.cli import main as cli
from lore.presets import DUAL_PRESETS, EMBEDDED, PAPER, PRESET_FIELDS, preset_table, resolve_dual
from lore.table6 import COMMON
from lore.training.config import TrainConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "lore.md"


def method_of(config):
    """The `Method` a `TrainConfig` names, as the engine builds it."""
    from lore.methods import build_method

    return build_method(config.method, config)


def test_the_paper_preset_is_app_c_and_algorithm_1():
    assert (PAPER.dual_signal, PAPER.dual_features, PAPER.dual_link, PAPER.dual_optimizer) == (
        "violation", "raw", "softplus", "sgd")
    assert (PAPER.dual_hidden, PAPER.dual_lr, PAPER.primal_steps) == (COMMON["dual_hidden"], COMMON["dual_lr"],
                                                                     COMMON["primal_steps"]) == (512, 5e-4, 5)


def test_lore_train_resolves_to_the_paper_preset(capsys):
    assert cli(["train", "--method", "lore", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dual_preset"] == "paper" and {k: printed[k] for k in PRESET_FIELDS} == PAPER.values()
    assert (printed["lr"], printed["weight_decay"], printed["pgd_steps"], printed["rho"]) == (1e-5, 1e-4, 10, 0.1)
    assert cli(["train", "--dual-preset", "embedded", "--dual-lr", "3e-3", "--print-config"]) == 0
    embedded = json.loads(capsys.readouterr().out)
    assert {k: embedded[k] for k in PRESET_FIELDS} == {**EMBEDDED.values(), "dual_lr": 3e-3}  # one value overridden


def test_a_preset_flag_replaces_the_dual_values_of_a_config_file(tmp_path, capsys):
    """A config.json records resolved values; --dual-preset on the command line replaces them (flags still win)."""
    recorded = tmp_path / "config.json"
    recorded.write_text(json.dumps(TrainConfig().to_dict()))  # the paper's values, written out
    assert cli(["train", "--config", str(recorded), "--dual-preset", "embedded", "--dual-hidden", "8",
                "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {k: printed[k] for k in PRESET_FIELDS} == {**EMBEDDED.values(), "dual_hidden": 8}


def test_train_config_keeps_explicit_values_and_refuses_unknown_presets():
    assert {k: getattr(TrainConfig(), k) for k in PRESET_FIELDS} == PAPER.values()
    config = TrainConfig(dual_preset="embedded", dual_signal="violation", primal_steps=3)
    assert (config.dual_signal, config.primal_steps, config.dual_lr) == ("violation", 3, EMBEDDED.dual_lr)
    assert TrainConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()  # config.json round trip
    with pytest.raises(ValueError, match="dual_preset must be one of \\('paper', 'embedded'\\), got 'fast'"):
        TrainConfig(dual_preset="fast")
    with pytest.raises(ValueError, match="dual_preset must be one of"):
        resolve_dual("fast", {})


def test_the_python_api_is_the_papers_lore_by_default():
    method = lore.lore()
    multiplier = method.multiplier(16)
    assert isinstance(multiplier, MultiplierNetwork) and multiplier.head[0].out_features == 512
    assert not multiplier.standardize and not multiplier.normalize and multiplier.link == "softplus"
    assert method.constraint.violation_rate is None  # the dual ascends on the violations
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16))
    step = lore.RobustStep(encoder, method, torch.optim.AdamW(encoder.parameters(), lr=1e-5), eps=4 / 255,
                           embed_dim=16)
    dual = step.primal_dual.dual_optimizer
    assert type(dual) is torch.optim.SGD and dual.param_groups[0]["lr"] == 5e-4 and dual.param_groups[0]["maximize"]
    assert dual.param_groups[0]["momentum"] == 0 and step.primal_steps == 5 == step.primal_dual.primal_steps_per_dual
    embedded = lore.lore(preset="embedded")
    assert embedded.multiplier(16).standardize and embedded.constraint.violation_rate is None  # violation signal
    assert embedded.dual_ascent.optimizer == "sgd" and embedded.dual_ascent.lr == EMBEDDED.dual_lr == 3e-2
    assert embedded.multiplier(16).link == "projected" and EMBEDDED.dual_init == 0.0


def test_the_library_and_the_cli_build_the_same_method():
    """`lore.lore(preset=P)` and `lore train --dual-preset P` give the same multiplier and dual ascent."""

    for name in DUAL_PRESETS:
        api, cli_method = lore.lore(preset=name), method_of(TrainConfig(dual_preset=name))
        assert api.dual_ascent == cli_method.dual_ascent and api.constraint == cli_method.constraint
        assert repr(api.multiplier(8)) == repr(cli_method.multiplier(8))


def test_docs_lore_md_shows_the_presets_as_the_code_defines_them():
    block = re.search(r"<!-- presets:begin[^\n]*-->\n(.*?)\n<!-- presets:end -->", DOC.read_text(), flags=re.S)
    assert block is not None, "docs/lore.md lost its presets table"
    assert block.group(1) == preset_table(), "docs/lore.md's presets table differs: paste `python -m lore.presets`"
