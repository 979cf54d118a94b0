"""What a run writes to disk, predicted from the model before it is written: last.pt and the export.

The sizes are the tensors' bytes (the files add a few kilobytes of container and names):

- last.pt: the encoder's state (every parameter and buffer), AdamW's two moments of each trainable parameter
  (same dtype; omitted with `--no-save-optimizer-state`), and the dual state (the multiplier and its optimizer);
- the export: the whole open_clip model (the tuned image tower and the untouched text tower, so that it loads
  in open_clip as it came) or the tuned backbone alone (timm, the digits models).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the tensors' elements."""
    return sum(t.numel() * t.element_size() for t in tensors)


def _state_bytes(state: object) -> int:
    """Bytes of every tensor in a (nested) state dict."""
    if isinstance(state, torch.Tensor):
        return tensor_bytes([state])
    if isinstance(state, Mapping):
        return sum(_state_bytes(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_state_bytes(value) for value in state)
    return 0


def format_bytes(size: int) -> str:
    """'1.06 GB', '352 MB', '84 kB' (powers of 1000), three significant digits."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class DiskUse:
    """Predicted bytes of one run's files.

    Attributes:
        encoder: the encoder's state in last.pt.
        moments: AdamW's two moments of the trainable parameters (0 when they are not saved).
        dual: the multiplier and its optimizer's state.
        export: the export folder's weights.
    """

    encoder: int
    moments: int
    dual: int
    export: int

    @property
    def checkpoint(self) -> int:
        """last.pt."""
        return self.encoder + self.moments + self.dual

    def describe(self) -> str:
        """One line for the log."""
        lean = "" if not self.moments else f" ({format_bytes(self.checkpoint - self.moments)} with --no-save-optimizer-state)"
        return (f"disk: last.pt about {format_bytes(self.checkpoint)}{lean}, the export's weights about "
                f"{format_bytes(self.export)} (plus its config, processor and tokenizer files; docs/training.md#disk)")


def predict(encoder: torch.nn.Module, exported: torch.nn.Module, dual_state: Mapping, *, save_optimizer_state: bool
            ) -> DiskUse:
    """The sizes a run of `encoder` will write.

    Args:
        encoder: the module whose `state_dict` last.pt holds (its trainable parameters are what AdamW updates).
        exported: the module the export writes (the whole open_clip model, or the backbone).
        dual_state: the robust step's `state_dict()` (the multiplier and its optimizer).
        save_optimizer_state: whether last.pt keeps AdamW's moments.
    """
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    return DiskUse(encoder=_state_bytes(encoder.state_dict()),
                   moments=2 * tensor_bytes(trainable) if save_optimizer_state else 0,
                   dual=_state_bytes(dual_state), export=_state_bytes(exported.state_dict()))


__all__ = ["DiskUse", "format_bytes", "predict", "tensor_bytes"]
