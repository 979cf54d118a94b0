"""The training data pipeline: worker processes, prefetching, pinned memory, exact resume.

`GlobalBatchSampler` decides which images each step sees: step s belongs to
epoch s // N at position s % N, the epoch's order is a permutation drawn from
(seed, epoch), a global batch is `world_size * batch_size` consecutive
indices of it, and rank r takes its r-th slice. Started at step s, it yields
exactly the batches an uninterrupted run would have seen from s on, so a run
killed in the middle of an epoch resumes on the next unseen batch.

`training_batches` turns those index lists into tensors with a
`torch.utils.data.DataLoader` (decoding in `workers` processes into uint8
batches, a quarter of float32's bytes, `prefetch` batches ahead per worker as
`prefetch_batches` sizes them from a budget in bytes, pinned memory for
asynchronous copies to a GPU, where they become float pixels).
Undecodable images are replaced by the next decodable index inside the
workers (deterministic: the same choice on every rank and every resume) and
reported to the main process, which logs them.
"""

from __future__ import annotations

import signal
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.images import TensorImages, batches_per_epoch, epoch_order, load_item
from ..data.specs import UnreadableImageError


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's dataset indices for steps `start_step .. total_steps - 1`.

    Args:
        num_samples: dataset size N.
        batch_size: images per rank per step.
        world_size, rank: the DDP layout (1, 0 for a single process).
        seed: seed of the epoch permutations.
        start_step, total_steps: the steps to cover (a resumed run starts where the checkpoint stopped).
    """

    def __init__(self, num_samples: int, batch_size: int, *, world_size: int = 1, rank: int = 0, seed: int = 0,
                 start_step: int = 0, total_steps: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if not 0 <= start_step <= total_steps:
            raise ValueError(f"need 0 <= start_step <= total_steps, got {start_step} and {total_steps}")
        self.num_samples, self.batch_size, self.world_size, self.rank = num_samples, batch_size, world_size, rank
        self.seed, self.start_step, self.total_steps = seed, start_step, total_steps
        self.global_batch = batch_size * world_size
        self.per_epoch = batches_per_epoch(num_samples, self.global_batch)

    def __len__(self) -> int:
        return self.total_steps - self.start_step

    def __iter__(self) -> Iterator[list[int]]:
        epoch_cached, order = -1, None
        for step in range(self.start_step, self.total_steps):
            epoch, position = divmod(step, self.per_epoch)
            if epoch != epoch_cached:
                epoch_cached, order = epoch, epoch_order(self.num_samples, epoch, self.seed).tolist()  # once an epoch
            first = position * self.global_batch + self.rank * self.batch_size
            yield order[first:first + self.batch_size]


class _Substituting(Dataset):
    """Items as (image, label, index actually loaded, messages about skipped files).

    With `skip` an undecodable item is replaced by the next decodable index (i + 1, i + 2, ... mod N);
    without it, the error message travels back as the item (raised in the main process, one clean line).
    """

    def __init__(self, base: Dataset, skip: bool) -> None:
        self.base, self.skip = base, skip

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        messages: list[str] = []
        try:
            image, label, loaded = load_item(self.base, index, messages.append if self.skip else None)
        except UnreadableImageError as error:
            return None, None, None, (str(error),)
        return image, label, loaded, tuple(messages)


def _collate(items):
    messages = tuple(m for item in items for m in item[3])
    if any(item[0] is None for item in items):
        return None, None, None, messages
    images = torch.stack([item[0] for item in items])
    labels = torch.tensor([item[1] for item in items], dtype=torch.long)
    indices = torch.tensor([item[2] for item in items], dtype=torch.long)
    return images, labels, indices, messages


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """A DataLoader worker's init: SIGTERM and SIGINT are for the main process only.

    SLURM, torchrun and a terminal's Ctrl-C signal the whole process group; a worker that died of it would
    crash the main process ("DataLoader worker ... is killed by signal") before it could checkpoint. Ignoring
    them here lets the main process finish its batch, save, and shut the workers down itself.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def prefetch_batches(batch_bytes: int, workers: int, budget_bytes: int) -> int:
    """Batches each worker may prepare ahead so that all of them together stay within `budget_bytes` (at least
    one per worker: the DataLoader needs one).

    Args:
        batch_bytes: one batch's images (uint8: batch_size * 3 * H * W).
        workers: decoding processes (> 0).
        budget_bytes: host memory for prepared batches (shared, then pinned).
    """
    if workers < 1 or batch_bytes < 1:
        raise ValueError(f"need workers >= 1 and batch_bytes >= 1, got {workers} and {batch_bytes}")
    return max(1, budget_bytes // (workers * batch_bytes))


def training_batches(dataset: Dataset, sampler: GlobalBatchSampler, *, workers: int, prefetch: int = 4,
                     pin_memory: bool = False, on_unreadable: Optional[Callable[[str], None]] = None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(images [B, 3, H, W], labels [B], indices [B]) for each step of `sampler`, in order: images as the dataset
    stores them (uint8 in [0, 255] from image files, float in [0, 1] in memory; `as_float_pixels` converts).

    Args:
        dataset: items (image, label, index); in-memory `TensorImages` are indexed directly (no workers).
        sampler: which indices each step takes.
        workers: decoding processes (0: decode in this process).
        prefetch: batches each worker prepares ahead.
        pin_memory: page-locked batches, for `tensor.to("cuda", non_blocking=True)`.
        on_unreadable: None: the first undecodable image raises `UnreadableImageError` naming it;
            otherwise it is called with each message and the image is replaced (see `_Substituting`).
    """
    if isinstance(dataset, TensorImages):
        for indices in sampler:
            index = torch.tensor(indices, dtype=torch.long)
            yield dataset.images[index], dataset.labels[index], index
        return
    loader = DataLoader(_Substituting(dataset, skip=on_unreadable is not None), batch_sampler=sampler,
                        num_workers=workers, collate_fn=_collate, pin_memory=pin_memory,
                        prefetch_factor=prefetch if workers else None, persistent_workers=False,
                        worker_init_fn=ignore_stop_signals if workers else None)
    for images, labels, indices, messages in loader:
        if images is None:
            raise UnreadableImageError(messages[-1])
        for message in messages:
            on_unreadable(message)
        yield images, labels, indices
