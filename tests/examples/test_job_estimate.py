"""The main job's estimate: the reference machine's measured costs rescaled by this machine's speed, then corrected by
the time the finished models took."""

from __future__ import annotations

import pytest
import torch

from lore.presets import EMBEDDED, PAPER, PRESET_FIELDS

from lore_clip_support.job import Job, plan_seconds, speed_probe

SETTING = {"steps": 30, "eval_eps": [1, 2, 3], "apgd_iter": 10}


def test_the_plan_has_the_reference_evaluation_then_one_entry_per_model():
    plan = plan_seconds(SETTING, ["fare", "lore", "lore"], 449)
    assert len(plan) == 4 and all(cost > 0 for cost in plan)
    assert plan[0] < plan[1] < plan[2] == plan[3]  # an evaluation alone; FARE's step is cheaper than LORE's


def test_the_estimate_follows_the_batch_size():
    """A training step costs in proportion to its batch (timed at 64): at 256 the training part is 4x as long."""
    def training(batch_size, steps=30):
        reference, run = plan_seconds({**SETTING, "batch_size": batch_size, "steps": steps}, ["lore"], 449)
        return run - reference  # without its evaluation

    fixed = training(64, steps=0)  # probes and building
    assert training(256) - fixed == pytest.approx(4 * (training(64) - fixed))


def _job(speed: float, started: float) -> Job:
    """A Job with only what `expected` and `progress` read (building one trains nothing but takes seconds)."""
    job = Job.__new__(Job)
    job.args = type("Args", (), {"model": "digits-clip"})()
    job.s, job.labels, job.speed, job.started = SETTING, [0] * 449, speed, started
    return job


def test_progress_corrects_the_first_estimate_by_the_time_the_models_took(capsys, monkeypatch):
    """The first estimate is the plan times the speed probe's factor; once models finish, what is left is
    scaled by how long the finished part really took, so a probe misled by a passing load does not persist."""
    import lore_clip_support.job as job_module

    job = _job(speed=2.0, started=0.0)
    line = job.expected(["fare", "lore", "lore"])
    plan = plan_seconds(SETTING, ["fare", "lore", "lore"], 449)
    assert f"about {2.0 * sum(plan) / 60:.1f} min" in line and "2.00x" in line
    really = 3 * (plan[0] + plan[1])  # the reference evaluation and the first model took 3x their plan, not 2x
    monkeypatch.setattr(job_module.time, "perf_counter", lambda: really)
    job.progress(1, 3)
    out = capsys.readouterr().out
    assert f"about {3 * (plan[2] + plan[3]) / 60:.1f} min left" in out
    assert "took 1.50x its first estimate" in out


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
