"""A constraint bound to its multiplier: the checks `PrimalDual` runs once, when it is built.

Binding reads the protocols' flags once (`ConstraintKind.summed`, `MultiplierKind.averages_constraint`,
`per_index`) and tells the multiplier its constraint's type (`MultiplierKind.bind`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from .constraint import check_kind
from .protocols import ConstraintKind, Formulation, HasEntries, MultiplierKind
from .relaxation import RelaxationCost, check_relaxation, relaxation_report


@dataclass(frozen=True)
class Binding:
    """A constraint and its multiplier (None under a formulation without multipliers), with the flags the
    Lagrangian terms read."""

    constraint: ConstraintKind
    multiplier: Optional[MultiplierKind]
    equality: bool
    summed: bool
    averages: bool
    per_index: bool
    relax: Optional[RelaxationCost] = None  #: the constraint's relaxation cost (`constrained.relaxation`), if any

    def entries(self) -> Optional[torch.Tensor]:
        """[N] a copy of every lambda of a multiplier with a table of them (the `HasEntries` hook:
        `IndexedMultiplier`, `GroupMultiplier`, or a user's); None for others, whose lambda(x) needs an x."""
        return self.multiplier.entries() if isinstance(self.multiplier, HasEntries) else None

    def report_details(self, kept: list[Any], violation: torch.Tensor, multiplier: torch.Tensor) -> dict[str, Any]:
        """The constraint's own report fields (`ConstraintKind.report_details` of the observations `kept`) and,
        when it is relaxed, its relaxation's (`relaxation_report`: u and the relaxed bound, from lambda)."""
        extra = self.constraint.report_details(kept, violation)
        if self.relax is not None:
            extra = {**relaxation_report(self.relax, multiplier, violation), **extra}
        return extra


def check_hashable(constraint: object) -> None:
    """Refuses a constraint that cannot key the {constraint: multiplier} mapping, saying how to make it one.

    Raises:
        TypeError: `hash(constraint)` fails (a class defining __eq__ without __hash__, a non-frozen dataclass).
    """
    try:
        hash(constraint)
    except TypeError:
        raise TypeError(f"a constraint must be hashable (it keys the {{constraint: multiplier}} mapping); "
                        f"{type(constraint).__name__} is not: use @dataclass(frozen=True) or eq=False, or define "
                        "__hash__ beside __eq__") from None


def bind(constraint: ConstraintKind, multiplier: Optional[MultiplierKind], formulation: Formulation,
         bound: Mapping[str, Binding]) -> Binding:
    """Checks that `multiplier` can price `constraint` under `formulation`, beside the bindings already made.

    Raises:
        TypeError: a constraint or multiplier that does not implement its protocol.
        ValueError: a duplicate name, a shared multiplier object, a multiplier where none is taken (or none
            where one is needed), an equality priced by a multiplier of fixed sign.
    """
    if not isinstance(constraint, ConstraintKind):
        raise TypeError(f"constraints keys must implement constrained.protocols.ConstraintKind (name, kind, "
                        f"summed, check_multiplier, report_details), got {type(constraint).__name__}")
    check_kind(constraint.kind)
    equality = constraint.kind == "equality"
    if constraint.name in bound:
        raise ValueError(f"two constraints share the name {constraint.name!r}; give each a unique name=")
    if formulation.needs_multiplier and multiplier is None:
        raise ValueError(f"constraint {constraint.name!r}: {type(formulation).__name__} needs a multiplier")
    if not formulation.needs_multiplier and multiplier is not None:
        raise ValueError(f"constraint {constraint.name!r}: {type(formulation).__name__} takes no multiplier")
    if multiplier is not None:
        _check_multiplier(constraint, multiplier, equality, bound)
        multiplier.bind(equality)
    relax = getattr(constraint, "relax", None)
    if relax is not None:
        _check_relaxation(constraint, relax, multiplier, formulation, equality)
    return Binding(
        constraint=constraint,
        multiplier=multiplier,
        equality=equality,
        summed=bool(constraint.summed),
        averages=multiplier is not None and bool(multiplier.averages_constraint),
        per_index=multiplier is not None and bool(multiplier.per_index),
        relax=relax,
    )


def _check_relaxation(constraint: ConstraintKind, relax: object, multiplier: Optional[MultiplierKind],
                      formulation: Formulation, equality: bool) -> None:
    """A relaxation needs a dual variable, an inequality and a formulation whose dual term it can relax."""
    check_relaxation(relax, constraint.name)
    if equality:
        raise ValueError(f"constraint {constraint.name!r} is an equality: a relaxation u >= 0 loosens an inequality "
                         "bound; drop relax=")
    if multiplier is None or not getattr(formulation, "supports_relaxation", False):
        raise ValueError(f"constraint {constraint.name!r}: {type(formulation).__name__} cannot relax it (the relaxation "
                         "is priced through a multiplier; use Lagrangian() or AugmentedLagrangian())")


def _check_multiplier(constraint: ConstraintKind, multiplier: MultiplierKind, equality: bool,
                      bound: Mapping[str, Binding]) -> None:
    if not (isinstance(multiplier, nn.Module) and isinstance(multiplier, MultiplierKind)):
        raise TypeError(f"constraint {constraint.name!r}: multiplier must be an nn.Module implementing "
                        "constrained.protocols.MultiplierKind (averages_constraint, per_index, free_sign, "
                        f"features_of, value, bind, project_), got {type(multiplier).__name__}")
    if equality and not multiplier.free_sign:
        raise ValueError(f"constraint {constraint.name!r} is an equality: its multiplier must have a free sign "
                         f"(e.g. a ScalarMultiplier or IndexedMultiplier), not {type(multiplier).__name__} "
                         "(softplus multipliers are >= 0)")
    constraint.check_multiplier(multiplier)
    shared = [name for name, b in bound.items() if b.multiplier is multiplier]
    if shared:
        raise ValueError(f"constraint {constraint.name!r} is given the multiplier object of {shared[0]!r}: each "
                         "constraint needs its own (one dual step would move it twice, for two prices)")
