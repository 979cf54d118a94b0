"""lore.training.noise: PGD's start as a function of (seed, step, global row), drawn on the device."""

from __future__ import annotations

import torch

from lore.training.noise import rank_rows, uniform_start

CPU = torch.device("cpu")


def test_one_rank_and_two_ranks_draw_the_same_start_for_the_same_global_rows():
    whole = uniform_start(7, 3, rank_rows(0, 16), (3, 8, 5), 4 / 255, CPU)  # one process, 16 rows
    halves = [uniform_start(7, 3, rank_rows(rank, 8), (3, 8, 5), 4 / 255, CPU) for rank in (0, 1)]  # 2 ranks of 8
    assert torch.equal(torch.cat(halves), whole)
    quarters = [uniform_start(7, 3, rank_rows(rank, 4), (3, 8, 5), 4 / 255, CPU) for rank in range(4)]
    assert torch.equal(torch.cat(quarters), whole)


def test_the_start_changes_with_seed_step_and_row_and_fills_the_ball_uniformly():
    eps = 8 / 255
    base = uniform_start(0, 0, rank_rows(0, 64), (3, 32, 32), eps, CPU)
    assert not torch.equal(base, uniform_start(1, 0, rank_rows(0, 64), (3, 32, 32), eps, CPU))
    assert not torch.equal(base, uniform_start(0, 1, rank_rows(0, 64), (3, 32, 32), eps, CPU))
    assert not torch.equal(base[1:], base[:-1])
    assert base.dtype == torch.float32 and base.abs().max() < eps
    u = (base / eps + 1) / 2  # 196,608 values: each of 10 bins holds 10 % +- 0.3 % (about 4 standard errors)
    shares = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert (shares - 0.1).abs().max() < 0.003, shares
    assert abs(float(u.mean()) - 0.5) < 0.003 and abs(float(u.std()) - 12 ** -0.5) < 0.003
    flat = u.reshape(64, -1)
    neighbours = torch.corrcoef(torch.stack([flat[:, :-1].reshape(-1), flat[:, 1:].reshape(-1)]))[0, 1]
    rows = torch.corrcoef(torch.stack([flat[0], flat[1]]))[0, 1]
    assert abs(float(neighbours)) < 0.01 and abs(float(rows)) < 0.02


def test_an_odd_number_of_values_per_row_and_large_batches_are_chunked_consistently():
    odd = uniform_start(5, 2, torch.arange(3), (1, 3, 3), 0.5, CPU)  # 9 values: the last pair's second half unused
    assert odd.shape == (3, 1, 3, 3)
    rows = torch.arange(300)  # above one chunk's rows at this size: the chunks join seamlessly
    big = uniform_start(5, 2, rows, (3, 64, 64), 0.5, CPU)
    assert torch.equal(big[290:], uniform_start(5, 2, rows[290:], (3, 64, 64), 0.5, CPU))


def test_the_keys_hash_on_the_host_exactly_as_the_rows_hash_on_the_device():
    from lore.training.noise import _mix32, _mix_int

    values = [0, 1, 12345, 2 ** 31, 2 ** 32 - 1, 987654321]
    assert [_mix_int(v) for v in values] == _mix32(torch.tensor(values)).tolist()
