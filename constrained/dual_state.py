"""Checks on a saved `PrimalDual.state_dict()` before it is loaded: a state from another set-up, or with values
the stepper could never have written, is refused naming the entry, and nothing is loaded."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Optional, cast

import torch
from torch import nn

from .binding import Binding
from .protocols import MultiplierKind


def constraint_settings(bindings: Mapping[str, Binding]) -> dict[str, str]:
    """{name: the constraint's description} (its repr without memory addresses): what a multiplier's values mean."""
    return {name: re.sub(r" at 0x[0-9a-fA-F]+", "", repr(binding.constraint))
            for name, binding in sorted(bindings.items())}


def check_setup(state: Any, expected: Mapping[str, Any], settings: Mapping[str, str], has_scaler: bool) -> None:
    """Refuses a state of another set-up.

    Args:
        state: the saved state dict.
        expected: {key: this stepper's value} for the keys that must be equal (constraints, formulation, ...).
        settings: this stepper's `constraint_settings`.
        has_scaler: whether this stepper has a GradScaler.
    """
    if not isinstance(state, dict) or "multipliers" not in state:
        raise ValueError("not a PrimalDual state dict (no 'multipliers' entry)")
    for key, mine in expected.items():
        if state.get(key) != mine:
            raise ValueError(f"state dict has {key}={state.get(key)!r}, this PrimalDual has {mine!r}")
    saved_settings = state.get("constraint_settings")  # absent in states saved before it was recorded
    if saved_settings is not None and saved_settings != settings:
        changed = [f"{name}: saved {saved_settings.get(name)} vs now {mine}"
                   for name, mine in settings.items() if saved_settings.get(name) != mine]
        raise ValueError("state dict belongs to other constraint settings (its multipliers price other bounds): "
                         + "; ".join(changed))
    if (state.get("scaler") is None) != (not has_scaler):
        raise ValueError("state dict was saved " + ("without" if state.get("scaler") is None else "with")
                         + " a GradScaler, this PrimalDual has " + ("one" if has_scaler else "none"))


def check_values(state: dict[str, Any], multipliers: nn.ModuleDict) -> None:
    """Refuses step counts that are not non-negative integers, multiplier entries that are not finite, and
    multipliers outside their feasible set (a saved state that the multiplier's `project_` would change, e.g. a
    negative lambda of an inequality), naming the entry. Loads into copies: `multipliers` is untouched."""
    for key in ("primal_steps", "dual_steps"):
        value = state.get(key)
        number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"state dict's {key} must be a non-negative integer, got {value!r}")
    saved = state["multipliers"]
    if not isinstance(saved, dict):
        raise ValueError(f"state dict's multipliers must be a state dict, got {type(saved).__name__}")
    for key, tensor in saved.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise ValueError(f"state dict's multiplier entry {key!r} is not finite")
    trial = copy.deepcopy(multipliers)
    try:
        trial.load_state_dict(saved)
    except RuntimeError as error:  # torch's shape/key mismatch report, named as what it means here
        raise ValueError(f"state dict's multipliers do not fit this PrimalDual's (another multiplier kind or "
                         f"size?): {error}") from None
    for name, module in trial.items():
        multiplier = cast(MultiplierKind, module)
        loaded = [p.detach().clone() for p in multiplier.parameters()]
        multiplier.project_()
        for before, after in zip(loaded, multiplier.parameters()):
            if not torch.equal(before, after.detach()):
                changed = before[before != after.detach()]
                raise ValueError(f"state dict's multipliers of {name!r} hold values outside their feasible set, "
                                 f"e.g. negative values (min {float(changed.min()):.4g}) where an inequality's "
                                 "multiplier is >= 0")


def saved_state(multipliers: nn.ModuleDict, dual_optimizer: Optional[torch.optim.Optimizer],
                scaler: Optional[torch.amp.GradScaler]) -> dict[str, Any]:
    """The tensors of a stepper's dual state: {"multipliers", "dual_optimizer", "scaler"} (None for an absent one)."""
    return {"multipliers": multipliers.state_dict(),
            "dual_optimizer": None if dual_optimizer is None else dual_optimizer.state_dict(),
            "scaler": None if scaler is None else scaler.state_dict()}


def restore_state(state: dict[str, Any], multipliers: nn.ModuleDict, dual_optimizer: Optional[torch.optim.Optimizer],
                  scaler: Optional[torch.amp.GradScaler]) -> None:
    """Loads `saved_state`'s parts of `state` (checked first with `check_setup` and `check_values`)."""
    multipliers.load_state_dict(state["multipliers"])
    if dual_optimizer is not None:
        dual_optimizer.load_state_dict(state["dual_optimizer"])
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
