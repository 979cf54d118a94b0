"""The registry of evaluation attacks: the names `lore eval --attacks` accepts and what runs each (torch-free).

The suite (`lore.evaluation.suite.robust_accuracy`) runs the requested attacks in order under AutoAttack's
policy: each attack sees only the points every earlier attack failed on, and a point counts as robust only if
all fail. An attack's own policy is its `AttackEntry`: the fewest classes it can run on (APGD-DLR-T compares the
true logit with the three largest others, so it needs 4), and why, for the report's list of skipped attacks.

A user's attack is one `register_attack` call, from Python or a plugin (`lore.plugins`); the built-ins
register themselves the same way. This module imports nothing of torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

from ..plugins import check_new_name, load_plugins

DEFAULT_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-t")
"""`lore eval`'s cascade by default: APGD-CE, then APGD-DLR-T (AutoAttack's white-box pair)."""


@dataclass(frozen=True)
class AttackEntry:
    """One registered attack.

    Attributes:
        name: the name users write (`--attacks apgd-ce,NAME`).
        run: `(classifier, images [B, C, H, W] in [0, 1], labels [B], eps, settings, generator) -> fooled [B] bool`,
            where `settings` is the suite's `EvalSettings` (iterations, restarts, ...), eps the l_inf radius in
            pixel units and `generator` the batch's seeded `torch.Generator`; a callable or "module:attribute".
        min_classes: the fewest classes the attack runs on; below it the suite skips it and says why.
        needs: why it needs `min_classes` (the report's reason, completed with the classifier's class count).
        summary: one line for help texts.
    """

    name: str
    run: Union[str, Callable[..., Any]]
    min_classes: int = 2
    needs: str = ""
    summary: str = ""


_REGISTERED: dict[str, AttackEntry] = {}


def register_attack(entry: AttackEntry, *, replace: bool = False) -> AttackEntry:
    """Adds `entry`, so that `lore eval --attacks` and `EvalSettings` accept its name.

    Raises:
        ValueError: a name that is not lower-case words joined by "-" (names are joined by "+" in reports and
            listed with "," on the command line), a taken name (unless `replace`), or `min_classes` < 2.
    """
    check_new_name("attack", entry.name, _REGISTERED, replace)
    if isinstance(entry.min_classes, bool) or not isinstance(entry.min_classes, int) or entry.min_classes < 2:
        raise ValueError(f"attack {entry.name!r}: min_classes must be an integer >= 2, got {entry.min_classes!r}")
    _REGISTERED[entry.name] = entry
    return entry


register_attack(AttackEntry("apgd-ce", "lore.evaluation.suite:run_apgd_ce",
                            summary="APGD on the cross-entropy (Croce & Hein 2020)"))
register_attack(AttackEntry("apgd-t", "lore.evaluation.suite:run_apgd_dlr_targeted", min_classes=4,
                            needs="APGD-DLR-T needs at least 4 classes (its loss compares the true logit with the "
                                  "three largest others)",
                            summary="targeted APGD on the DLR loss, n_targets target classes"))


def attack_names() -> tuple[str, ...]:
    """Every registered attack's name, the built-ins first, after loading the installed plugins."""
    load_plugins()
    return tuple(_REGISTERED)


def attack_entry(name: str) -> AttackEntry:
    """The registered attack `name`; an unknown name is refused with the known ones."""
    names = attack_names()
    if name not in names:
        raise ValueError(f"unknown attack {name!r}; choose from {list(names)}")
    return _REGISTERED[name]
