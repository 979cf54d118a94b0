"""Plugins: a user's package extends `lore` (methods, attacks, model families) without editing it (torch-free).

A package declares an entry point in the group `lore.plugins` whose target is a callable taking no arguments;
`lore` calls it once, the first time any registry is read, and the callable registers what it adds:

    # the plugin package's pyproject.toml
    [project.entry-points."lore.plugins"]
    my_method = "my_package.lore_plugin:register"

    # my_package/lore_plugin.py
    from lore.registry import MethodEntry, register_method

    def register():
        register_method(MethodEntry("my-method", {"rho": "rho"}, "my method", factory="my_package.methods:build"))

Registering from Python (`lore.registry.register_method`, `lore.evaluation.attacks.register_attack`,
`lore.models.families.register_model_family`) needs no entry point; `lore train` / `lore eval` reach a
registration made before they parse their arguments. The built-ins register themselves through the same calls.

This module imports nothing of lore or torch.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Mapping, Union

GROUP = "lore.plugins"
"""The entry-point group `load_plugins` reads."""

_state = {"loaded": False}


def load_plugins() -> None:
    """Calls every installed `lore.plugins` entry point once per process (later calls return at once).

    Raises:
        ImportError: an entry point that cannot be loaded, or whose target is not callable, named with its
            distribution's value (`module:attribute`); a plugin that raises while registering propagates.
    """
    if _state["loaded"]:
        return
    _state["loaded"] = True  # before the calls: a plugin that reads a registry must not load the plugins again
    from importlib.metadata import entry_points

    for point in entry_points(group=GROUP):
        try:
            target = point.load()
        except Exception as error:  # an import error of any kind inside the plugin: name the plugin
            raise ImportError(f"lore plugin {point.name!r} ({point.value}) could not be loaded: {error}") from error
        if not callable(target):
            raise ImportError(f"lore plugin {point.name!r} ({point.value}) is not callable; an entry point in "
                              f"{GROUP!r} must name a function that registers what the plugin adds")
        target()


NAME = re.compile(r"[a-z][a-z0-9_.]*(-[a-z0-9_.]+)*")
"""What every registry accepts as a name: lower-case words joined by "-" (no "," or "+", which the command line
and the reports use to join names)."""


def check_new_name(what: str, name: Any, registered: Mapping[str, Any], replace: bool) -> None:
    """Refuses a registration's name, as every registry does: not a `NAME`, or already registered (unless `replace`).

    Args:
        what: the registry's word for an entry ("method", "attack", "model family").
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{what} names are lower-case words joined by '-', got {name!r}")
    if name in registered and not replace:
        raise ValueError(f"{what} {name!r} is already registered; pass replace=True to replace it")


def reset_plugins() -> None:
    """Forgets that the plugins were loaded, so that the next registry read loads them again (for tests that
    install an entry point)."""
    _state["loaded"] = False


def import_attribute(target: str) -> Any:
    """What a "package.module:attribute" string names, its module imported now (import errors propagate)."""
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def lazy_exports(namespace: dict, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """A package's PEP 562 `__getattr__` and `__dir__`, from its one map of public names.

    `exports` maps each public name to the "package.module:attribute" that defines it; a name's module is imported
    when the name is first read (so `import lore` costs nothing, and torch-free names load without torch), and its
    value is cached in `namespace` (the package's `globals()`). The architecture test reads these maps as imports.
    """
    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = namespace[name] = import_attribute(target)
        return value

    def __dir__() -> list:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


def resolve(target: Union[str, Callable[..., Any]], what: str) -> Callable[..., Any]:
    """A registered implementation: a callable as is, or a "module:attribute" string imported now.

    Args:
        target: the callable, or "package.module:attribute" (lazy, so that registries stay free of torch).
        what: how errors name it ("the factory of method 'lore'").

    Raises:
        ValueError: a string without one ":", or whose module or attribute does not exist; a non-callable.
    """
    if callable(target):
        return target
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"{what} must be a callable or a 'module:attribute' string, got {target!r}")
    try:
        value = import_attribute(target)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what} is {target!r}, which cannot be imported: {error}") from error
    if not callable(value):
        raise ValueError(f"{what} is {target!r}, which is not callable")
    return value
