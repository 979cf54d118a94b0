"""A `DataLoader` whose position within an epoch can be saved and restored (no Lightning needed):
`constrained.lightning` checkpoints it, so a mid-epoch resume sees exactly the batches the uninterrupted run
would have seen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["ResumableLoader"]


class _EpochOrder(Sampler[int]):
    """The sample order of `ResumableLoader`: a permutation of range(`size`) drawn from (seed, epoch) alone,
    starting `skip` samples in (once, for a resumed epoch); under torch.distributed each rank takes every
    world-th index of it (padded to equal length, as `DistributedSampler` does)."""

    def __init__(self, size: int, seed: int, shuffle: bool) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at every epoch start
        if epoch != self.epoch:
            self.skip = 0  # a resumed position belongs to the epoch it was saved in
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            order += order[:(-len(order)) % world]
            order = order[rank::world]
        return order

    def __len__(self) -> int:
        return len(self._indices())

    def __iter__(self) -> Iterator[int]:
        order, self.skip = self._indices()[self.skip:], 0
        return iter(order)


class ResumableLoader(DataLoader[Any]):
    """A `DataLoader` whose order Lightning can checkpoint mid-epoch: a seeded shuffle per epoch, resumed at
    the next unseen batch.

    The permutation of epoch e depends only on (`seed`, e), so a resumed run sees exactly the batches the
    uninterrupted one would; `state_dict` records (epoch, batches handed out this epoch) and Lightning stores it
    in every checkpoint (a loader with `state_dict`/`load_state_dict` is one Lightning checkpoints).

    Args:
        dataset: a map-style dataset (has `len`).
        batch_size: rows per batch.
        seed: the shuffle's seed.
        shuffle: False keeps the dataset's order (still resumable mid-epoch).
        **kwargs: other `DataLoader` arguments (`num_workers`, `collate_fn`, `drop_last`, ...); not `sampler`,
            `batch_sampler` or `generator`, which the loader owns. Under DDP pass
            ``Trainer(use_distributed_sampler=False)``: the loader shards each epoch by rank itself.
    """

    def __init__(self, dataset: Dataset[Any], batch_size: int, seed: int, shuffle: bool = True, **kwargs: Any) -> None:
        owned = sorted({"sampler", "batch_sampler", "generator"} & set(kwargs))
        if owned:
            raise ValueError(f"ResumableLoader owns its order: drop {', '.join(owned)} (under DDP, pass "
                             "Trainer(use_distributed_sampler=False); the loader shards by rank itself)")
        if not hasattr(dataset, "__len__"):
            raise ValueError("ResumableLoader needs a map-style dataset with a length")
        self.seed = seed
        self.order = _EpochOrder(len(cast(Any, dataset)), seed, shuffle)
        super().__init__(dataset, batch_size=batch_size, sampler=self.order, **kwargs)
        self._handed_out = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._handed_out = self.order.skip // cast(int, self.batch_size)
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """{"seed", "epoch", "batches", "size", "batch_size"}: the batches of this epoch handed to the training loop
        so far, and the order they came from (dataset size and batch size)."""
        return {"seed": self.seed, "epoch": self.order.epoch, "batches": self._handed_out, "size": self.order.size,
                "batch_size": cast(int, self.batch_size)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continues epoch `state["epoch"]` after its first `state["batches"]` batches.

        Raises:
            ValueError: a state from another order: another seed, dataset size or batch size (the resumed epoch
                would skip samples it never saw, or repeat some), or one that does not record them.
        """
        missing = [key for key in ("seed", "epoch", "batches", "size", "batch_size") if key not in state]
        if missing:
            raise ValueError(f"the checkpoint's loader state lacks {', '.join(missing)} (written by an older "
                             "ResumableLoader?): the position cannot be checked against this loader's order")
        for key, ours, what in (("seed", self.seed, "seeded"), ("size", self.order.size, "over a dataset of size"),
                                ("batch_size", self.batch_size, "in batches of size")):
            if int(state[key]) != ours:
                raise ValueError(f"the checkpoint's loader was {what} {state[key]}, this one {ours}: resumed "
                                 f"at batch {state['batches']} it would skip or repeat samples; resume with the run's "
                                 f"own {key}")
        self.order.epoch = int(state["epoch"])
        self.order.skip = int(state["batches"]) * cast(int, self.batch_size)
        self._handed_out = int(state["batches"])
