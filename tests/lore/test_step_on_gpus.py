"""RobustStep's habits for a GPU, checked on this CPU: no host read until its numbers are read, one read for all
of them, deferred checks that still raise, the attack without weight gradients, micro-batches that all-reduce
once, phi_0 at the training precision."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import lore
from lore import ImageEncoder, RobustStep

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from host_reads import count_host_reads  # noqa: E402


def tiny_encoder(seed: int = 0) -> ImageEncoder:
    torch.manual_seed(seed)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, stride=4), torch.nn.GELU(), torch.nn.Flatten(),
                                   torch.nn.Linear(8 * 4 * 4, 16))
    return ImageEncoder(backbone, (0.5,) * 3, (0.25,) * 3, embed_dim=16)


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", [lore.lore(0.1), lore.fare()], ids=["lore", "fare"])
def test_a_step_reads_nothing_until_read_then_everything_at_once(method):
    encoder = tiny_encoder()
    step = RobustStep(encoder, method, torch.optim.AdamW(encoder.parameters(), lr=1e-3), eps=8 / 255, pgd_steps=2)
    step(images())  # the first step: lazy optimizer state, standardisation checks
    with count_host_reads() as reads:
        result = step(images(seed=1))
        assert reads.sites == []
        numbers = result.as_dict()
    assert len(reads.sites) == 1 and reads.sites[0][0] == "tolist", reads.sites
    assert numbers["robust_loss"] > 0 and (method.constraint is None) == ("clean/satisfied_fraction" not in numbers)


def test_eager_checks_read_each_check_and_stop_before_the_update():
    encoder = tiny_encoder()
    step = RobustStep(encoder, lore.lore(0.1), torch.optim.AdamW(encoder.parameters(), lr=1e-3), eps=8 / 255,
                      pgd_steps=1, checks="eager")
    step(images())
    with count_host_reads() as reads:
        step(images(seed=1))
    assert len(reads.sites) > 5  # pixel range, the K steps' loss/Lagrangian/gradient reads, ...
    with torch.no_grad():
        encoder.backbone[3].bias[0] = float("nan")  # one NaN weight: the loss is NaN
    before = {k: v.clone().nan_to_num() for k, v in encoder.state_dict().items()}
    with pytest.raises(FloatingPointError, match="the Lagrangian is nan; stopping before the update"):
        step(images(seed=2))
    assert all(torch.equal(before[k], v.nan_to_num()) for k, v in encoder.state_dict().items())  # no update


def test_deferred_checks_raise_when_the_result_is_read():
    encoder = tiny_encoder()
    step = RobustStep(encoder, lore.fare(), torch.optim.AdamW(encoder.parameters(), lr=1e-3), eps=8 / 255,
                      pgd_steps=1)
    result = step(torch.full((8, 3, 16, 16), float("nan")))
    assert result.problems == ("non-finite loss or gradient",)
    with pytest.raises(FloatingPointError, match="fare: non-finite loss or gradient"):
        result.fused_read()
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        step(255 * images()).fused_read()


def test_the_attack_asks_for_no_weight_gradient_so_a_compiled_graph_computes_none():
    """A compiled backward graph keeps the weight gradients' matmuls when the weights require gradients, even
    if only the input's is asked for: the attack runs with them switched off (and restored)."""
    encoder = tiny_encoder()
    seen = []
    encoder.register_forward_hook(lambda module, args, out: seen.append(
        (torch.is_grad_enabled(), any(p.requires_grad for p in module.parameters()))))
    step = RobustStep(encoder, lore.lore(0.1), torch.optim.AdamW(encoder.parameters(), lr=1e-3), eps=8 / 255,
                      pgd_steps=3, primal_steps=2)
    step(images()).fused_read()
    attack = seen[1:4]  # after phi_0's no-grad forward: the 3 PGD forwards, then 2 primal forwards
    assert attack == [(True, False)] * 3 and seen[4:6] == [(True, True)] * 2
    assert all(p.requires_grad for p in encoder.parameters())


def test_only_the_last_micro_batch_all_reduces():
    """DDP's no_sync around every micro-batch's forward but the last: their backward passes accumulate locally."""
    class FakeDDP(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module, self.entered, self.quiet = module, [], False

        @contextmanager
        def no_sync(self):
            self.quiet = True
            try:
                yield
            finally:
                self.quiet = False

        def forward(self, x):
            if torch.is_grad_enabled() and all(p.requires_grad for p in self.module.parameters()):
                self.entered.append(self.quiet)  # a training forward (not phi_0's, not the attack's)
            return self.module(x)

    encoder = tiny_encoder()
    wrapped = FakeDDP(encoder)
    step = RobustStep(wrapped, lore.lore(0.1), torch.optim.AdamW(encoder.parameters(), lr=1e-3), eps=8 / 255,
                      pgd_steps=1, primal_steps=1, accumulation_steps=3, embed_dim=16, measure_clean=False)
    step(images(9)).fused_read()
    assert wrapped.entered == [True, True, False]  # the fused forward of micro-batches 0, 1 (no sync), then 2


def test_phi_0_runs_at_the_training_precision():
    """Under bf16 autocast phi_0 is computed under the same autocast: the step's reference equals the probe's
    (an fp32 phi_0 would sit ~1e-4 of ||phi_0||^2 away from the bf16 encoder at the start: docs/performance.md)."""
    encoder = tiny_encoder()
    captured = {}
    step = RobustStep(encoder, lore.lore(0.1), torch.optim.AdamW(encoder.parameters(), lr=0.0), eps=8 / 255,
                      pgd_steps=1, primal_steps=1, autocast_dtype=torch.bfloat16)
    constraint = step.method.constraint
    observe = constraint.observe

    def spy(out, ref, **kwargs):
        captured["ref"] = ref.detach().clone()
        return observe(out, ref, **kwargs)

    object.__setattr__(constraint, "observe", spy)
    x = images()
    step(x).fused_read()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = step.reference(x).float()
    with torch.no_grad():
        fp32 = step.reference(x).float()
    assert torch.equal(captured["ref"], expected) and not torch.equal(captured["ref"], fp32)


def test_a_compiled_attack_backward_has_the_input_gradients_matmuls_only():
    """Counted in the graphs torch.compile builds: with two Linear layers the attack's backward graph holds 2
    matmuls (the input's gradient through each layer), not 4 (plus each weight's gradient, which a compiled
    graph computes whenever the weights require gradients, asked for or not)."""
    from torch._dynamo.backends.common import aot_autograd

    backward_matmuls = []

    def count(graph, inputs):
        backward_matmuls.append(sum(1 for n in graph.graph.nodes if n.op == "call_function" and "mm" in str(n.target)))
        return graph.forward

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 32), torch.nn.GELU(),
                                   torch.nn.Linear(32, 16))
    encoder = ImageEncoder(backbone, (0.5,) * 3, (0.25,) * 3, embed_dim=16)
    torch._dynamo.reset()
    compiled = torch.compile(encoder, backend=aot_autograd(fw_compiler=lambda g, i: g.forward, bw_compiler=count))
    step = RobustStep(compiled, lore.fare(), torch.optim.AdamW(encoder.parameters(), lr=1e-3), eps=8 / 255,
                      pgd_steps=2, primal_steps=1, measure_clean=False)
    step(images()).fused_read()
    # the attack's graph (input gradients: 2) and the update's (weights: 2, the hidden input: 1)
    assert sorted(backward_matmuls) == [2, 3], backward_matmuls
