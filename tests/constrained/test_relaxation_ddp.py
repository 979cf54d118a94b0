"""Resilient constraints under torch.distributed: two gloo ranks, each with half of the batch, agree on u(x) and
take the steps one process takes on the whole batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from constrained import Constraint, MultiplierNetwork, NormMargin, PrimalDual, Quadratic, sq_l2

STEPS, BATCH, WIDTH = 40, 16, 4


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(STEPS, BATCH, WIDTH, generator=generator, dtype=torch.float64),
            torch.randn(STEPS, BATCH, WIDTH, generator=generator, dtype=torch.float64))


def _train(rows: slice, world: int = 1) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(model weights, relaxations u(x) of the last batch's rows, relaxation_mean per step) from `rows` of each
    batch; under `world` > 1 the model is wrapped in DistributedDataParallel."""
    torch.manual_seed(0)
    model = torch.nn.Linear(WIDTH, WIDTH).double()
    forward = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    multiplier = MultiplierNetwork(WIDTH, hidden=8, init=0.5).double()
    cost = Quadratic(alpha=2.0)
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.05), name="near", relax=cost)
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.05), {constraint: multiplier}, dual_lr=0.2)
    inputs, targets = _data()
    means = []
    for step in range(STEPS):
        x, y = inputs[step, rows], targets[step, rows]

        def closure():
            out = forward(x)
            return (out - y).pow(2).sum(1).mean(), [constraint.observe(out, x, features=x)]

        report = pd.step(closure)
        means.append(report.constraints["near"].relaxation_mean)
    with torch.no_grad():
        u = cost.relaxation(multiplier(inputs[-1, rows]), torch.zeros(len(inputs[-1, rows]), dtype=torch.float64))
    return torch.cat([p.detach().flatten() for p in model.parameters()]), u, means


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        half = BATCH // 2
        weights, u, means = _train(slice(rank * half, (rank + 1) * half), world=2)
        torch.save({"weights": weights, "u": u, "means": torch.tensor(means)}, os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()  # both ranks done communicating before either tears gloo down (else a rank may abort)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_agree_on_u_and_match_one_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not built")
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])  # one model on both ranks
    weights, u, _ = _train(slice(0, BATCH))
    assert torch.allclose(ranks[0]["weights"], weights, atol=1e-10)
    # u(x) of each rank's rows is the one process's u on those rows: the multiplier network agrees everywhere
    assert torch.allclose(torch.cat([ranks[0]["u"], ranks[1]["u"]]), u, atol=1e-10)
    assert float(u.max()) > 0.01  # the relaxation acts
