"""PGD's random start, drawn on the device as a pure function of (seed, step, global row).

Each value is an integer hash of (seed, step, row, position in the row) turned into a uniform number, so:
- a rank draws only its own rows, on its own device, with no generator state to carry or save;
- 1 rank and N ranks draw the same start for the same global rows (the noise does not depend on the layout);
- a CPU and a GPU draw bit-identical noise (integer arithmetic, then exact float conversions).

The hash is Wellons' "lowbias32" integer mixer (one 32-bit hash per pair of values, 16 bits each), on 32-bit
values held in int64 tensors (every product is split so that no intermediate leaves int64's range).
"""

from __future__ import annotations

import torch

_MASK = 0xFFFFFFFF
_CHUNK = 1 << 24  #: values hashed per pass: bounds the int64 temporaries (128 MiB each) whatever the batch


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2^32 for int64 x in [0, 2^32), without overflowing int64."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + ((high * (constant & 0xFFFF)) << 16)) & _MASK


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32: a bijection of [0, 2^32) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix_int(value: int) -> int:
    """`_mix32` on a Python int (the per-run and per-step keys; no tensor, so no device round trip)."""
    x = value & _MASK
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK
    return x ^ (x >> 16)


def uniform_start(seed: int, step: int, rows: torch.Tensor, shape: tuple[int, ...], eps: float,
                  device: torch.device) -> torch.Tensor:
    """PGD's uniform random start in the l_inf ball for the given global rows.

    Args:
        seed: the run's seed.
        step: the batch number (the start of batch s never depends on batches before it).
        rows: [B] int64 global row numbers of the batch (rank r of a DDP job: r * batch_size + arange(batch_size)).
        shape: one image's shape (C, H, W).
        eps: the ball's radius in pixel units.
        device: where to draw it (the training device).

    Returns:
        [B, *shape] float32 on `device`, each value uniform in (-eps, eps) on 2^16 centred levels.
    """
    key = _mix_int(_mix_int(_mix_int(seed) ^ (seed >> 32)) ^ step)
    per_row = 1
    for size in shape:
        per_row *= int(size)
    if per_row > _MASK:
        raise ValueError(f"an image of shape {shape} has more than 2^32 values")
    row_keys = _mix32((rows.to(device, torch.int64) & _MASK) ^ key)  # [B]
    pairs = (per_row + 1) // 2  # one 32-bit hash gives two 16-bit uniforms
    out = torch.empty((len(row_keys), 2 * pairs), dtype=torch.float32, device=device)
    rows_per_chunk = max(1, _CHUNK // pairs)
    positions = torch.arange(pairs, dtype=torch.int64, device=device)
    for first in range(0, len(row_keys), rows_per_chunk):
        hashed = _mix32(row_keys[first:first + rows_per_chunk, None] ^ positions)
        halves = torch.stack([hashed >> 16, hashed & 0xFFFF], dim=-1).flatten(1)
        out[first:first + rows_per_chunk] = (halves.to(torch.float32) + 0.5) * (1.0 / (1 << 16))
    return ((2 * out[:, :per_row] - 1) * eps).reshape(len(row_keys), *shape)


def rank_rows(rank: int, batch_size: int) -> torch.Tensor:
    """The global row numbers rank `rank` holds in a batch of `batch_size` rows per rank: [batch_size] int64."""
    return torch.arange(rank * batch_size, (rank + 1) * batch_size, dtype=torch.int64)
