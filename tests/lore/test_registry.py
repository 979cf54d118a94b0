"""One registry of methods: the CLI, TrainConfig, the engine and lore.methods all read lore.registry, and a user's
method registered there (from Python or a plugin) reaches all of them."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from lore import registry
from lore.cli import build_parser
from lore.presets import DualSettings
from lore.training.config import TrainConfig


def method_of(config):
    """The `Method` a `TrainConfig` names, as the engine builds it."""
    from lore.methods import build_method

    return build_method(config.method, config)


def _train_action(dest: str):
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["train"]
    return next(a for a in train._actions if a.dest == dest)


def test_cli_choices_are_the_registry_names():
    assert tuple(_train_action("method").choices) == registry.method_names()
    assert registry.BUILTIN_METHODS == ("fare", "naive", "lore", "tecoa", "tecoa-l2", "tecoa-kl")
    assert registry.method_names()[:6] == registry.BUILTIN_METHODS


def test_train_config_accepts_exactly_the_registry_names():
    for name in registry.method_names():
        assert TrainConfig(method=name).method == name
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="lora")


def test_every_entry_names_config_fields_its_factory_accepts():
    from lore.plugins import resolve

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert isinstance(TrainConfig().dual_settings, DualSettings)  # what a DUAL_SETTINGS option reads, whole
    for name, entry in registry.METHODS.items():
        parameters = inspect.signature(resolve(entry.factory, name)).parameters
        assert set(entry.options.values()) <= fields | {registry.DUAL_SETTINGS}, name
        assert set(entry.options) <= set(parameters), name
    assert set(registry.DUAL_SETTINGS_FIELDS) <= fields


def test_the_engine_builds_every_method_through_its_entry():

    for name in registry.method_names():
        assert method_of(TrainConfig(method=name)).name == name


def test_a_registered_method_reaches_config_engine_and_refusals(monkeypatch):
    """A user's entry (a callable factory reading only rho) is accepted by TrainConfig, built by the engine with
    the config's rho, and the settings it does not read are refused as for the built-ins."""
    from lore import methods

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    monkeypatch.setattr(registry, "METHODS", registry.MappingProxyType(registry._REGISTERED))
    registry.register_method(registry.MethodEntry("lore-tight", {"rho": "rho"}, "LORE with only rho",
                                                  factory=lambda rho: methods.lore(rho)))
    method = method_of(TrainConfig(method="lore-tight", rho=0.02))
    assert method.name == "lore" and method.constraint.margin.rho == 0.02
    with pytest.raises(ValueError, match="penalty"):
        TrainConfig(method="lore-tight", penalty=1.0)  # lore reads it; lore-tight does not


@pytest.mark.parametrize("entry, message", [
    (registry.MethodEntry("Lore", factory="lore.methods:lore"), "lower-case"),
    (registry.MethodEntry("fare-k", factory="lore.methods:fare"), "does not end in '-k'"),
    (registry.MethodEntry("a,b", factory="lore.methods:fare"), "lower-case"),
    (registry.MethodEntry("lore", factory="lore.methods:lore"), "already registered"),
    (registry.MethodEntry("new"), "no factory"),
    (registry.MethodEntry("new", {"rho": 1}, factory="lore.methods:lore"), "options map"),
    (registry.MethodEntry("new", authors_updates=0, factory="lore.methods:fare"), "authors_updates"),
])
def test_bad_registrations_are_refused_and_leave_the_registry_as_it_was(entry, message):
    before = dict(registry.METHODS)
    with pytest.raises(ValueError, match=message):
        registry.register_method(entry)
    assert dict(registry.METHODS) == before


def test_a_factory_that_cannot_be_built_is_named(monkeypatch):
    from lore.methods import build_method

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    registry.register_method(registry.MethodEntry("ghost", factory="lore.methods:no_such_factory"))
    with pytest.raises(ValueError, match="factory of method 'ghost' is 'lore.methods:no_such_factory'"):
        build_method("ghost", TrainConfig(method="fare"))
    registry.register_method(registry.MethodEntry("wrong", factory=lambda: 3))
    with pytest.raises(ValueError, match="returned int, not a lore Method"):
        build_method("wrong", TrainConfig(method="fare"))


def test_the_registry_imports_only_torch_free_modules():
    """lore.registry is the torch-free hub every layer reads: of lore it imports only lore.plugins and lore.presets,
    which import only the standard library and lore.vocabulary."""
    import ast

    from lore import plugins, presets, vocabulary

    for module in (registry, plugins, presets, vocabulary):
        tree = ast.parse(open(module.__file__).read())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert imported <= {"__future__", "dataclasses", "math", "types", "typing", "re", "importlib",
                            "importlib.metadata", "plugins", "presets", "vocabulary"}, (module.__name__, imported)


def test_config_options_reach_the_factory():

    assert method_of(TrainConfig(method="naive", naive_weight=3.0)).formulation.weight == 3.0
    assert method_of(TrainConfig(method="tecoa-kl", dual="scalar")).multiplier(8).__class__.__name__ == "ScalarMultiplier"
