"""Attacks, one home for all: l_inf PGD for training, APGD-CE / APGD-DLR-T and Square for evaluation,
Gaussian noise and common corruptions, and the gradient-masking check.

    from lore.attacks import pgd, apgd_ce, apgd_dlr_targeted, square_attack, CORRUPTIONS

Units: images in [0, 1], eps a fraction of the pixel range (4/255). Names are imported lazily (PEP 562).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_HOMES = {
    "pgd": ".projected_gradient",
    "check_pixel_range": ".projected_gradient",
    "apgd": ".auto_pgd",
    "apgd_ce": ".auto_pgd",
    "apgd_dlr_targeted": ".auto_pgd",
    "checkpoints": ".auto_pgd",
    "dlr_targeted_loss": ".auto_pgd",
    "target_classes": ".auto_pgd",
    "square_attack": ".square",
    "CORRUPTIONS": ".corruptions",
    "gaussian_noise": ".corruptions",
    "GradientMaskingWarning": ".masking",
    "check_gradient_masking": ".masking",
}

__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
