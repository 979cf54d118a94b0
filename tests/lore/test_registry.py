"""One registry of methods: the CLI, TrainConfig, the engine and lore.methods all read lore.registry."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from lore import registry
from lore.cli import build_parser
from lore.training.config import TrainConfig


def _train_action(dest: str):
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["train"]
    return next(a for a in train._actions if a.dest == dest)


def test_cli_choices_are_the_registry_names():
    assert _train_action("method").choices is registry.METHOD_NAMES
    assert registry.METHOD_NAMES == ("fare", "naive", "lore", "tecoa", "tecoa-l2", "tecoa-kl")


def test_train_config_accepts_exactly_the_registry_names():
    for name in registry.METHOD_NAMES:
        assert TrainConfig(method=name).method == name
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="lora")


def test_every_registered_name_has_exactly_one_factory():
    from lore import methods

    assert tuple(methods.METHODS) == registry.METHOD_NAMES


def test_every_entry_names_config_fields_its_factory_accepts():
    from lore import methods

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, entry in registry.METHODS.items():
        parameters = inspect.signature(methods.METHODS[name]).parameters
        assert set(entry.options.values()) <= fields, name
        assert set(entry.options) <= set(parameters), name


def test_the_engine_builds_methods_through_the_registry(monkeypatch):
    """A method registered in lore.registry with a factory in lore.methods is accepted by TrainConfig and built
    by the engine; registered without a factory, it is named."""
    from lore import methods
    from lore.training.engine import make_method

    for name in registry.METHOD_NAMES:
        assert make_method(TrainConfig(method=name)).name == name
    extended = dict(registry.METHODS)
    extended["lore-tight"] = registry.MethodEntry("lore-tight", {"rho": "rho"}, "LORE with only rho")
    monkeypatch.setattr(registry, "METHODS", extended)
    with pytest.raises(ValueError, match="'lore-tight' is registered in lore.registry but has no factory"):
        make_method(TrainConfig(method="lore-tight", rho=0.02))
    monkeypatch.setattr(methods, "METHODS", {**methods.METHODS, "lore-tight": methods.lore})
    method = make_method(TrainConfig(method="lore-tight", rho=0.02))
    assert method.name == "lore" and method.constraint.margin.rho == 0.02


def test_the_registry_imports_nothing():
    """lore.registry is the torch-free hub every layer reads: it imports no lore module, by statement or by string."""
    import ast

    tree = ast.parse(open(registry.__file__).read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "dataclasses", "types", "typing"}, imported


def test_config_options_reach_the_factory():
    from lore.training.engine import make_method

    assert make_method(TrainConfig(method="naive", naive_weight=3.0)).formulation.weight == 3.0
    assert make_method(TrainConfig(method="tecoa-kl", dual="scalar")).multiplier(8).__class__.__name__ == "ScalarMultiplier"
