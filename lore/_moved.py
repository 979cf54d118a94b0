"""Old module paths of `lore` that moved in the 0.2 layout keep importing, with a DeprecationWarning.

`import lore.encoders` (now `lore.models.encoders`) gives a stand-in module whose names are looked up in
the new home(s), so code written against the flat layout keeps running while it is updated. The table
below is the whole list; `install()` is called once by `lore/__init__.py`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "lore.encoders": ("lore.models.encoders",),
    "lore.export": ("lore.models.export",),
    "lore.digits": ("lore.data.digits", "lore.models.digits"),
    "lore.digits_clip": ("lore.models.digits_clip",),
    "lore.training.data": ("lore.data.images",),
    "lore.training.folders": ("lore.data.folders",),
    "lore.evaluation.apgd": ("lore.attacks.auto_pgd",),
    "lore.evaluation.square": ("lore.attacks.square",),
    "lore.evaluation.corruptions": ("lore.attacks.corruptions",),
    "lore.evaluation.masking": ("lore.attacks.masking",),
    "lore.evaluation.datasets": ("lore.data.benchmark", "lore.data.release_files"),
    "lore.evaluation.zero_shot": ("lore.data.zero_shot", "lore.data.imagenet"),
}
"""Old dotted module path -> the module(s) that now hold its names, searched in order."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds only the old paths of `MOVED_MODULES` (asked last, after the real files were looked for)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None  # a plain, empty module

    def exec_module(self, module: types.ModuleType) -> None:
        homes = MOVED_MODULES[module.__name__]
        warnings.warn(f"{module.__name__} moved to {' and '.join(homes)}; the old path will be removed",
                      DeprecationWarning, stacklevel=2)
        targets = [importlib.import_module(home) for home in homes]

        def __getattr__(name: str):
            for target in targets:
                if hasattr(target, name):
                    return getattr(target, name)
            raise AttributeError(f"module {module.__name__!r} (moved to {', '.join(homes)}) has no attribute {name!r}")

        module.__getattr__ = __getattr__
        module.__doc__ = f"Moved to {', '.join(homes)} (deprecated path)."


_FINDER = _MovedModuleFinder()


def install() -> None:
    """Appends the finder to `sys.meta_path` once."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
