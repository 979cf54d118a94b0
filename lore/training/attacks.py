"""The registry of training attacks: the names `lore train --attack` accepts and what runs each (torch-free).

A training attack finds the perturbation the encoder is trained against, once per batch (Algorithm 1, line 3):
`RobustStep` calls it with the method's robust loss as the objective. It takes `lore.attacks.pgd`'s arguments,
`(objective, images, *, eps, step_size, steps, generator, initial_delta, check_range) -> delta`, where
`objective` maps perturbed images [B, C, H, W] to the per-sample loss [B] to maximise and `delta` is the
perturbation [B, C, H, W], detached, |delta| <= eps and images + delta in [0, 1]. The paper's is PGD.

A user's attack is one `register_training_attack` call, from Python or a plugin (`lore.plugins`); the built-in
registers itself the same way. This module imports nothing of torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

from ..plugins import check_new_name, load_plugins, resolve

DEFAULT_TRAINING_ATTACK = "pgd"  #: the paper's: l_inf PGD, --pgd-steps steps of eps/4 from a uniform start


@dataclass(frozen=True)
class TrainingAttackEntry:
    """One registered training attack.

    Attributes:
        name: the name users write (`lore train --attack NAME`).
        run: the attack (see the module docstring), a callable or a "module:attribute" string imported when a run
            is built.
        summary: one line for help texts.
    """

    name: str
    run: Union[str, Callable[..., Any]]
    summary: str = ""


_REGISTERED: dict[str, TrainingAttackEntry] = {}


def register_training_attack(entry: TrainingAttackEntry, *, replace: bool = False) -> TrainingAttackEntry:
    """Adds `entry`, so that `lore train --attack` and `TrainConfig` accept its name.

    Raises:
        ValueError: a name that is not lower-case words joined by "-", or a taken name (unless `replace`).
    """
    check_new_name("training attack", entry.name, _REGISTERED, replace)
    _REGISTERED[entry.name] = entry
    return entry


register_training_attack(TrainingAttackEntry(DEFAULT_TRAINING_ATTACK, "lore.attacks.projected_gradient:pgd",
                                             summary="l_inf PGD from a uniform start, step eps/4 (the paper's)"))


def training_attack_names() -> tuple[str, ...]:
    """Every registered training attack's name, the built-in first, after loading the installed plugins."""
    load_plugins()
    return tuple(_REGISTERED)


def training_attack(name: str) -> Callable[..., Any]:
    """The attack registered as `name`, imported; an unknown name is refused with the known ones."""
    names = training_attack_names()
    if name not in names:
        raise ValueError(f"unknown training attack {name!r}; choose from {list(names)}")
    return resolve(_REGISTERED[name].run, f"the training attack {name!r}")
