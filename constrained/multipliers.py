"""Lagrange multipliers lambda >= 0 for per-sample constraints.

Four parameterisations, all `nn.Module`s built on cooper's multiplier classes and implementing
`constrained.protocols.MultiplierKind` (what `PrimalDual` calls: `features_of`, `value`, `bind`, `project_`):

=========================  ============================  =========================
class                      lambda for sample i           enforces
=========================  ============================  =========================
`ScalarMultiplier`         one lambda                    E[violation] <= 0 only (App. B)
`IndexedMultiplier`        lambda[index_i]               every training sample
`LinearMultiplier`         softplus(w . f_i + b)         per sample, through features
`MultiplierNetwork`        softplus(MLP(f_i))            per sample (paper: lambda_w(x) = F_w(phi_0(x)))
=========================  ============================  =========================

The feature multipliers (`LinearMultiplier`, `MultiplierNetwork`) live in `constrained.feature_multipliers`;
they take `link="softplus"` (the paper's) or `link="projected"`: lambda = relu(z) with the dual gradient of
projected ascent (see `constrained.feature_multipliers.LINKS`).

How a multiplier enters the Lagrangian (see `PrimalDual`): the primal sees
E_i[lambda_i.detach() * g_i]; the dual ascends E_i[lambda_i * g_i.detach()] for
shared parameters (scalar, linear, network) and lambda_i * g_i for the
per-index multipliers, so an index's step does not shrink with the batch size.
"""

from __future__ import annotations

from typing import Optional, cast

import cooper
import torch

from .validation import check_nonnegative_finite, check_positive_int
from .protocols import Observation


def constraint_type(equality: bool) -> cooper.ConstraintType:
    return cooper.ConstraintType.EQUALITY if equality else cooper.ConstraintType.INEQUALITY


class _Explicit:
    """The protocol members shared by the explicit multipliers (lambda is the parameter `weight` itself):
    binding sets cooper's constraint type; projection is cooper's clamp at 0 for an inequality."""

    def bind(self, equality: bool) -> None:
        """Records the constraint's type: an inequality's lambda is kept >= 0 by `project_`."""
        cast(cooper.multipliers.ExplicitMultiplier, self).set_constraint_type(constraint_type(equality))

    def project_(self) -> None:
        """Clamps lambda at 0 for an inequality (after each dual step); nothing for an equality."""
        cast(cooper.multipliers.ExplicitMultiplier, self).post_step_()


class ScalarMultiplier(_Explicit, cooper.multipliers.DenseMultiplier):
    """A single lambda >= 0 for the whole constraint.

    It prices only the average constraint E_x[d - m] <= 0 (paper App. B,
    Fig. 8): samples may stay violated as long as the mean is not.

    Args:
        init: initial lambda, >= 0.
        device: where the parameter lives.
    """

    averages_constraint = True
    per_index = False
    free_sign = True  # bound to an equality constraint, lambda takes either sign

    def __init__(self, init: float = 0.0, device: Optional[torch.device] = None) -> None:
        init = check_nonnegative_finite(init, "init")
        super().__init__(init=torch.tensor([init]), device=device)

    def features_of(self, observation: Observation) -> None:
        """The scalar multiplier needs no features."""
        return None

    def value(self, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[1] lambda, whatever `features` (the scalar prices the mean violation)."""
        return cast(torch.Tensor, self())


class LookupMultiplier(_Explicit, cooper.multipliers.IndexedMultiplier):
    """lambda[id] >= 0 from a table of N entries, looked up by the observation's [B] int64 ids: the base of
    `IndexedMultiplier` (ids are dataset indices) and `groups.GroupMultiplier` (ids are groups). Subclasses
    set `per_index`.

    Gradients are sparse; use `torch.optim.SGD` or cooper's `nuPI` as the dual optimizer (not Adam).

    Args:
        num_entries: N; ids must lie in [0, N).
        init: initial lambda of every entry, >= 0.
        device: where the parameters live.
    """

    averages_constraint = False
    per_index: bool
    free_sign = True  # bound to an equality constraint, lambda takes either sign

    def __init__(self, num_entries: int, init: float = 0.0, device: Optional[torch.device] = None) -> None:
        num_entries = check_positive_int(num_entries, "num_entries")
        init = check_nonnegative_finite(init, "init")
        super().__init__(init=torch.full((num_entries,), init), device=device)

    def features_of(self, observation: Observation) -> torch.Tensor:
        """Returns the observation's [B] int64 indices, checked against N."""
        indices = observation.indices
        if indices is None:
            raise ValueError(
                f"constraint {observation.constraint.name!r} uses an {type(self).__name__}: "
                "pass indices=... to observe()"
            )
        num_entries = self.weight.shape[0]
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_entries):
            raise ValueError(
                f"indices must lie in [0, {num_entries}), got min {int(indices.min())} max {int(indices.max())}"
            )
        return indices.to(self.weight.device)

    def value(self, features: Optional[torch.Tensor]) -> torch.Tensor:
        """[B] lambda[ids] for the [B] int64 ids `features_of` returned."""
        if features is None:
            raise ValueError(f"{type(self).__name__} needs the observation's indices")
        return cast(torch.Tensor, self(features))

    def entries(self) -> torch.Tensor:
        """[N] a detached copy of every entry's lambda (reports of a batch that held none of the ids read it)."""
        return self.weight.detach().clone()


class IndexedMultiplier(LookupMultiplier):
    """One lambda_i >= 0 per dataset index: the exact dual of a finite sample of constraints.

    Gradients are sparse; use `torch.optim.SGD` or cooper's `nuPI` as the dual optimizer (not Adam).

    Args:
        num_samples: dataset size N; indices must lie in [0, N).
        init: initial lambda for every index, >= 0.
        device: where the parameters live.
    """

    per_index = True  # each entry owns one sample: dual gradients are summed across micro-batches and ranks

    def __init__(self, num_samples: int, init: float = 0.0, device: Optional[torch.device] = None) -> None:
        super().__init__(check_positive_int(num_samples, "num_samples"), init, device)
