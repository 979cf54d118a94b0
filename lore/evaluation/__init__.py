"""Robustness evaluation: APGD-CE / APGD-DLR-T (AutoAttack protocol), Square, noise, corruptions."""

from .apgd import apgd, apgd_ce, apgd_dlr_targeted, checkpoints, dlr_targeted_loss
from .corruptions import CORRUPTIONS, gaussian_noise
from .linear_head import fit_linear_head
from .masking import GradientMaskingWarning, check_gradient_masking
from .report import plot_robustness, write_report
from .square import square_attack
from .suite import ATTACKS, EvalSettings, evaluate, format_eps, robust_accuracy

__all__ = [
    "ATTACKS", "CORRUPTIONS", "EvalSettings", "GradientMaskingWarning", "apgd", "apgd_ce", "apgd_dlr_targeted",
    "check_gradient_masking", "checkpoints", "dlr_targeted_loss", "evaluate", "fit_linear_head", "format_eps",
    "gaussian_noise", "plot_robustness", "robust_accuracy", "square_attack", "write_report",
]
