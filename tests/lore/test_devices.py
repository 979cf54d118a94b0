"""Device helpers: bf16 is flagged where it would be emulated (slow), not where it is native."""

from __future__ import annotations

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
