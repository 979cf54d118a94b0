"""The main job's first estimate is the reference machine's measured costs rescaled by this machine's speed."""

from __future__ import annotations

import pytest
import torch

from lore.presets import EMBEDDED, PAPER, PRESET_FIELDS

from lore_clip_support.job import expected_minutes, speed_probe

SETTING = {"steps": 30, "eval_eps": [1, 2, 3], "apgd_iter": 10}


def test_the_estimate_scales_with_the_measured_speed():
    base = expected_minutes(SETTING, ["fare", "lore"], 3, 449, speed=1.0)
    assert base > 0
    assert expected_minutes(SETTING, ["fare", "lore"], 3, 449, speed=1.6) == pytest.approx(1.6 * base)


def test_the_estimate_follows_the_batch_size():
    """A training step costs in proportion to its batch (timed at 64): at 256 the training part is 4x as long."""
    evaluation = expected_minutes({**SETTING, "steps": 0}, [], 3, 449)
    runs_64 = expected_minutes({**SETTING, "batch_size": 64}, ["lore"], 3, 449) - evaluation
    runs_256 = expected_minutes({**SETTING, "batch_size": 256}, ["lore"], 3, 449) - evaluation
    fixed = expected_minutes({**SETTING, "steps": 0}, ["lore"], 3, 449) - evaluation  # probes and building
    assert runs_256 - fixed == pytest.approx(4 * (runs_64 - fixed))


def test_the_speed_probe_times_real_passes():
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 32))
    small = speed_probe(encoder, torch.rand(64, 3, 16, 16), repeats=3)
    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4096), torch.nn.Linear(4096, 32))
    assert 0 < small < speed_probe(wide, torch.rand(64, 3, 16, 16), repeats=3)  # more work takes longer


def test_main_job_keeps_explicit_dual_settings_and_refuses_bad_ones(capsys):
    """An explicit 0 (a frozen dual, no warm-up) is applied, not replaced by the default; out-of-range values are
    refused at parse time, naming the flag."""
    from lore_clip import parse_args
    from lore_clip_support.job import settings_for

    s = settings_for(parse_args(["--dual-lr", "0", "--warmup-steps", "0", "--dual-hidden", "8", "--dual-beta2", "0"]))
    assert (s["dual_lr"], s["warmup_steps"], s["dual_hidden"], s["dual_beta2"]) == (0.0, 0, 8, 0.0)
    default = settings_for(parse_args([]))  # the embedded model: the embedded preset, whole
    assert default["dual_preset"] == "embedded" and default["warmup_steps"] == 0
    assert {name: default[name] for name in PRESET_FIELDS} == EMBEDDED.values()
    real = settings_for(parse_args(["--model", "ViT-B-32", "--train-data", "imgs"]))  # real weights: the paper's
    assert real["dual_preset"] == "paper" and {name: real[name] for name in PRESET_FIELDS} == PAPER.values()
    chosen = settings_for(parse_args(["--dual-preset", "paper"]))
    assert {name: chosen[name] for name in PRESET_FIELDS} == PAPER.values()
    for flag, bad in (("--dual-hidden", "0"), ("--warmup-steps", "-1"), ("--dual-lr", "-1e-3"), ("--dual-beta2", "1"),
                      ("--dual-beta2", "-0.5"), ("--violation-rate", "1"), ("--primal-steps", "0")):
        with pytest.raises(SystemExit):
            parse_args([f"{flag}={bad}"])
        assert f"{flag} must be" in capsys.readouterr().err
