"""Device helpers: bf16 is flagged where it would be emulated (slow), not where it is native."""

from __future__ import annotations

import pytest
import torch

from lore import devices


def test_bf16_on_a_cpu_without_native_support_is_warned_about(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    message = devices.bf16_warning(torch.device("cpu"))
    assert message is not None and "--precision fp32" in message and "no native bf16" in message


def test_bf16_on_a_cpu_with_avx512_bf16_or_amx_is_not(monkeypatch):
    for avx, amx in ((True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda avx=avx: avx)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert devices.bf16_warning(torch.device("cpu")) is None


@pytest.mark.parametrize("torch_version,vision_version,needle", [
    ("2.13.0", "0.29.1", "are not a pair (torchvision 0.28 goes with torch 2.13)"),
    ("2.14.1+cpu", "0.29.1+cu130", "are different builds"),
])
def test_a_mismatched_torch_and_torchvision_pair_is_one_line_naming_both(monkeypatch, capsys, torch_version,
                                                                         vision_version, needle):
    import torch
    import torchvision

    from lore.cli import main
    from lore.devices import torch_pair_problem

    assert torch_pair_problem() is None  # this machine's pair works
    monkeypatch.setattr(torch, "__version__", torch_version)
    monkeypatch.setattr(torchvision, "__version__", vision_version)
    problem = torch_pair_problem()
    assert needle in problem and torch_version in problem and vision_version in problem and "pip install" in problem
    assert main(["eval", "--device", "cpu"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and needle in said[0]
