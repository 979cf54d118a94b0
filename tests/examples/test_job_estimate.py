"""The main job's first estimate is the reference machine's measured costs rescaled by this machine's speed."""

from __future__ import annotations

import pytest
import torch

from lore_clip_support.job import expected_minutes, speed_probe

SETTING = {"steps": 30, "eval_eps": [1, 2, 3], "apgd_iter": 10}


def test_the_estimate_scales_with_the_measured_speed():
    base = expected_minutes(SETTING, ["fare", "lore"], 3, 449, speed=1.0)
    assert base > 0
    assert expected_minutes(SETTING, ["fare", "lore"], 3, 449, speed=1.6) == pytest.approx(1.6 * base)


def test_the_speed_probe_times_real_passes():
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 32))
    small = speed_probe(encoder, torch.rand(64, 3, 16, 16), repeats=3)
    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4096), torch.nn.Linear(4096, 32))
    assert 0 < small < speed_probe(wide, torch.rand(64, 3, 16, 16), repeats=3)  # more work takes longer
