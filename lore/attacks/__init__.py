"""Attacks, one home for all: l_inf PGD for training, APGD-CE / APGD-DLR-T and Square for evaluation,
Gaussian noise and common corruptions, and the gradient-masking check.

    from lore.attacks import pgd, apgd_ce, apgd_dlr_targeted, square_attack, CORRUPTIONS

Units: images in [0, 1], eps a fraction of the pixel range (4/255).
"""

from __future__ import annotations

from .auto_pgd import apgd, apgd_ce, apgd_dlr_targeted, checkpoints, dlr_targeted_loss, target_classes
from .corruptions import CORRUPTIONS, gaussian_noise
from .masking import GradientMaskingWarning, check_gradient_masking
from .projected_gradient import check_pixel_range, pgd
from .square import square_attack

__all__ = [
    "CORRUPTIONS", "GradientMaskingWarning", "apgd", "apgd_ce", "apgd_dlr_targeted", "check_gradient_masking",
    "check_pixel_range", "checkpoints", "dlr_targeted_loss", "gaussian_noise", "pgd", "square_attack",
    "target_classes",
]
