"""`constrained.resumable_loader.ResumableLoader`: a seeded order per epoch, whose position is saved and restored
(no Lightning needed; tests/constrained/test_lightning.py resumes Lightning runs with it)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from constrained.resumable_loader import ResumableLoader

ROWS, BATCH = 192, 32


def dataset() -> TensorDataset:
    x = torch.randn(ROWS, 5, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, (x[:, 0] > 0).float())


def test_the_shuffle_differs_between_epochs_and_follows_the_seed():
    first, again, other = (ResumableLoader(dataset(), BATCH, seed=seed) for seed in (3, 3, 4))
    rows = [torch.cat([batch[0][:, 0] for batch in loader_]) for loader_ in (first, again, other)]
    first.order.set_epoch(1)
    next_epoch = torch.cat([batch[0][:, 0] for batch in first])
    assert torch.equal(rows[0], rows[1]) and not torch.equal(rows[0], rows[2]) and not torch.equal(rows[0], next_epoch)
    assert torch.equal(rows[0].sort().values, next_epoch.sort().values)  # a permutation of the same rows


def test_a_loader_seeded_otherwise_than_the_checkpoint_is_refused():
    loader_ = ResumableLoader(dataset(), BATCH, seed=3)
    with pytest.raises(ValueError, match="seeded 3, this one 4"):
        ResumableLoader(dataset(), BATCH, seed=4).load_state_dict(loader_.state_dict())
    with pytest.raises(ValueError, match="owns its order: drop sampler"):
        ResumableLoader(dataset(), BATCH, seed=3, sampler=None)


def test_a_loader_state_from_another_batch_or_dataset_size_is_refused():
    """Only the seed was checked: a state loaded into a loader of another batch size skipped samples it never saw
    (8 of 16 unseen) or repeated them, and one from a larger dataset yielded nothing."""
    loader_ = ResumableLoader(dataset(), BATCH, seed=3)
    iterator = iter(loader_)
    next(iterator)
    state = loader_.state_dict()
    with pytest.raises(ValueError, match=f"in batches of size {BATCH}, this one {2 * BATCH}: resumed at batch 1"):
        ResumableLoader(dataset(), 2 * BATCH, seed=3).load_state_dict(state)
    smaller = torch.utils.data.Subset(dataset(), range(len(dataset()) // 2))
    with pytest.raises(ValueError, match=f"over a dataset of size {len(dataset())}, this one {len(smaller)}"):
        ResumableLoader(smaller, BATCH, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks size, batch_size"):
        ResumableLoader(dataset(), BATCH, seed=3).load_state_dict({"seed": 3, "epoch": 0, "batches": 1})
    resumed = ResumableLoader(dataset(), BATCH, seed=3)
    resumed.load_state_dict(state)  # the same order: continues where it stopped
    assert [b[0].tolist() for b in resumed] == [b[0].tolist() for b in iterator]


def test_the_lightning_module_offers_the_same_loader():
    lightning = pytest.importorskip("constrained.lightning")
    assert lightning.ResumableLoader is ResumableLoader
