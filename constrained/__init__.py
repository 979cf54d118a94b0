"""constrained: per-sample (semi-infinite) constraints for PyTorch training.

Declare ``d(out(x), ref(x)) <= m(x)`` as a value, pick a multiplier and a
formulation, and let `PrimalDual` run K primal steps per dual step::

    from constrained import Constraint, sq_l2, NormMargin
    Constraint(d=sq_l2, margin=NormMargin(0.1)).violation(out, ref)   # [B]

Built on cooper-optim (formulations, multiplier classes, nuPI).
"""

from cooper.optim import nuPI

from .constraint import Constraint, Observation
from .divergences import Divergence, cosine_distance, js_div, kl_div, l1, l2, sq_l2
from .formulations import AugmentedLagrangian, FixedPenalty, Formulation, Lagrangian
from .margins import EntropyMargin, FixedMargin, Margin, NormMargin
from .multipliers import IndexedMultiplier, LinearMultiplier, Multiplier, MultiplierNetwork, ScalarMultiplier
from .primal_dual import PrimalDual
from .report import ConstraintReport, StepReport

__all__ = [
    "AugmentedLagrangian",
    "Constraint",
    "ConstraintReport",
    "Divergence",
    "EntropyMargin",
    "FixedMargin",
    "FixedPenalty",
    "Formulation",
    "IndexedMultiplier",
    "Lagrangian",
    "LinearMultiplier",
    "Margin",
    "Multiplier",
    "MultiplierNetwork",
    "NormMargin",
    "Observation",
    "PrimalDual",
    "ScalarMultiplier",
    "StepReport",
    "cosine_distance",
    "js_div",
    "kl_div",
    "l1",
    "l2",
    "nuPI",
    "sq_l2",
]
