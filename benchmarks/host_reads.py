"""Counting the host reads of tensors: each is a device-to-host synchronisation on a GPU.

`count_host_reads()` patches the `torch.Tensor` methods through which Python code reads a tensor's value
(`item`, `tolist`, `__bool__`, `__float__`, `__int__`, `__index__`, `numpy`) and `torch.cuda.synchronize`, and
records each call with the line of library code that made it. On a CPU every op blocks anyway, so the count
is what a GPU run would wait for, measured where no GPU is. Reads made inside `torch.optim` are left out: they
read its step counters, which torch keeps on the host by design (non-capturable optimizers), so they cost no
synchronisation on a GPU either.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

READERS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")
PACKAGES = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("lore", "constrained"))  #: the code counted


@dataclass
class HostReads:
    """The reads seen: `sites` holds (method, 'file:line' of the innermost lore/constrained frame)."""

    sites: list[tuple[str, str]] = field(default_factory=list)
    active: bool = True

    def __len__(self) -> int:
        return len(self.sites)

    def reset(self) -> None:
        self.sites.clear()


OPTIMIZERS = str(Path(torch.optim.__file__).parent)


def _host_side(stack) -> bool:
    """A read torch.optim makes of its step counters (host tensors on every device)."""
    return any(frame.filename.startswith(OPTIMIZERS) for frame in stack)


def _caller(stack) -> str:
    for frame in reversed(stack):
        if frame.filename.startswith(PACKAGES):
            return f"{Path(frame.filename).name}:{frame.lineno}"
    return "outside lore/constrained"


@contextmanager
def count_host_reads():
    """Yields a `HostReads` that records every tensor read inside the block (restored on exit)."""
    reads = HostReads()
    originals = {name: getattr(torch.Tensor, name) for name in READERS}

    def wrap(name, original):
        def reader(self, *args, **kwargs):
            stack = traceback.extract_stack()[:-1]
            if reads.active and not _host_side(stack):
                reads.sites.append((name, _caller(stack)))
                reads.active = False  # a read made inside another (tolist -> __index__) counts once
                try:
                    return original(self, *args, **kwargs)
                finally:
                    reads.active = True
            return original(self, *args, **kwargs)
        return reader

    synchronize = torch.cuda.synchronize
    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    torch.cuda.synchronize = lambda *a, **k: reads.sites.append(("cuda.synchronize",
                                                                 _caller(traceback.extract_stack()[:-1])))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        torch.cuda.synchronize = synchronize
