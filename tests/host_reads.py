"""Counting the host reads of tensors: each is a device-to-host synchronisation on a GPU.

`count_host_reads()` patches the `torch.Tensor` methods through which Python code reads a tensor's value
(`item`, `tolist`, `__bool__`, `__float__`, `__int__`, `__index__`, `numpy`) and `torch.cuda.synchronize`, and
records each call with the line of library code that made it. On a CPU every op blocks anyway, so the count
is what a GPU run would wait for, measured where no GPU is.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

READERS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")
PACKAGES = tuple(str(Path(__file__).resolve().parents[1] / name) for name in ("lore", "constrained"))


@dataclass
class HostReads:
    """The reads seen: `sites` holds (method, 'file:line' of the innermost lore/constrained frame)."""

    sites: list[tuple[str, str]] = field(default_factory=list)
    active: bool = True

    def __len__(self) -> int:
        return len(self.sites)

    def reset(self) -> None:
        self.sites.clear()


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
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
            if reads.active:
                reads.sites.append((name, _caller()))
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
    torch.cuda.synchronize = lambda *a, **k: reads.sites.append(("cuda.synchronize", _caller()))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        torch.cuda.synchronize = synchronize
