"""Attack radii as the library and the command line spell them (torch-free).

The library takes eps as a fraction of the pixel range ([0, 1] images); the paper's tables and the command
line write 4/255. `parse_eps` reads either spelling, `format_eps` writes the second one back.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Union


def parse_eps(value: Union[str, float]) -> float:
    """Parses "4/255", "0.0157" or a float into a pixel-range fraction in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"eps must look like 4/255 or 0.0157, got {value!r}")
    try:
        eps = float(Fraction(value.strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError) as error:
        raise ValueError(f"eps must look like 4/255 or 0.0157, got {value!r}") from error
    if not (math.isfinite(eps) and 0 <= eps <= 1):
        raise ValueError(f"eps must be in [0, 1] (a fraction of the pixel range, e.g. 4/255), got {value!r}")
    return eps


def format_eps(eps: float) -> str:
    """4/255 -> "4/255" (rounded to the nearest 1/255 when close), otherwise the decimal."""
    scaled = eps * 255
    return f"{round(scaled)}/255" if abs(scaled - round(scaled)) < 1e-6 else f"{eps:.6g}"
