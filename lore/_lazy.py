"""Lazy public names for a package's `__init__` (PEP 562): a name's module is imported on first use.

Keeps light entry points (`lore --help`, the CLI's argument errors) from importing torch.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, homes: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """Returns the module-level `__getattr__` and `__dir__` serving `homes` ({name: ".module"}) for `package`."""

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name], package), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
