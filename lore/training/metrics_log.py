"""Where a run's per-batch numbers go: metrics.jsonl (rank 0) and, with --tensorboard, TensorBoard files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..files import open_append
from ..jsonio import dumps


class MetricsLog:
    """Appends one JSON record per logged batch to `output/metrics.jsonl`, and its numbers to TensorBoard.

    Args:
        output: the run folder.
        tensorboard: also write `output/tensorboard` (needs the tensorboard package).
        enabled: False on ranks other than 0: nothing is opened and `write` does nothing.
    """

    def __init__(self, output: Path, *, tensorboard: bool, enabled: bool) -> None:
        self._writer = _tensorboard(output) if tensorboard and enabled else None
        self._handle = open_append(output / "metrics.jsonl") if enabled else None

    def write(self, step: int, record: dict) -> None:
        """Writes {"step": step, **record} and flushes it, so an interrupted run keeps every logged batch."""
        if self._handle is None:
            return
        record = {"step": step, **record}
        self._handle.write(dumps(record) + "\n")
        self._handle.flush()
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._writer is not None:
            self._writer.close()


def _tensorboard(output: Path) -> Optional[Any]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from error
    return SummaryWriter(str(output / "tensorboard"))
