"""constrained: per-sample (semi-infinite) and group constraints for PyTorch training.

Declare ``d(out(x), ref(x)) <= m(x)`` (or a group bound E[g | A = a] <= c, a
parity constraint on rates, an equality) as a value, pick a multiplier and a
formulation, and let `PrimalDual` run K primal steps per dual step::

    from constrained import Constraint, sq_l2, NormMargin, demographic_parity
    Constraint(d=sq_l2, margin=NormMargin(0.1)).violation(out, ref)   # [B]
    demographic_parity(num_groups=2, bound=0.02).observe_scores(scores, groups)

Built on cooper-optim (formulations, multiplier classes, nuPI).
"""

from cooper.optim import nuPI

from .constraint import Constraint
from .divergences import Divergence, cosine_distance, js_div, kl_div, l1, l2, sq_l2
from .formulations import AugmentedLagrangian, FixedPenalty, Lagrangian
from .fairness import (bounded_group_loss, demographic_parity, equal_false_positive_rates, equal_opportunity,
                       equalized_odds, false_positive_rate, parity_difference)
from .groups import GroupConstraint, GroupMultiplier, RateConstraint
from .margins import EntropyMargin, FixedMargin, Margin, NormMargin
from .feature_multipliers import LinearMultiplier, MultiplierNetwork
from .multipliers import IndexedMultiplier, ScalarMultiplier
from .primal_dual import PrimalDual
from .relaxation import Linear, Quadratic, RelaxationCost
from .protocols import ConstraintKind, FitsFeatures, Formulation, HasEntries, MultiplierKind, Observation
from .report import ConstraintReport, DeferredReports, StepReport
from .selection import BestIterate

__all__ = [
    "AugmentedLagrangian",
    "BestIterate",
    "Constraint",
    "ConstraintKind",
    "ConstraintReport",
    "DeferredReports",
    "Divergence",
    "EntropyMargin",
    "FixedMargin",
    "FixedPenalty",
    "FitsFeatures",
    "Formulation",
    "GroupConstraint",
    "HasEntries",
    "GroupMultiplier",
    "IndexedMultiplier",
    "Lagrangian",
    "Linear",
    "LinearMultiplier",
    "Margin",
    "MultiplierKind",
    "MultiplierNetwork",
    "NormMargin",
    "Observation",
    "PrimalDual",
    "Quadratic",
    "RateConstraint",
    "RelaxationCost",
    "ScalarMultiplier",
    "StepReport",
    "bounded_group_loss",
    "cosine_distance",
    "demographic_parity",
    "equal_false_positive_rates",
    "equal_opportunity",
    "equalized_odds",
    "false_positive_rate",
    "js_div",
    "kl_div",
    "l1",
    "l2",
    "nuPI",
    "parity_difference",
    "sq_l2",
]
