"""`lore.vocabulary`: each set of names defined once, read by the configs, the command line and the step."""

import subprocess
import sys
import typing

import pytest

from lore.vocabulary import Checks, Corruption, DualLink, Passes, check_choice, choices


def test_the_two_sets_constrained_also_spells_are_the_same_names():
    """`constrained` is installable alone and imports torch, so it keeps its own links and check modes; `lore`
    hands its names to it, so they must be the ones `constrained` accepts."""
    from constrained.feature_multipliers import LINKS
    from constrained.primal_dual import CHECKS

    assert choices(DualLink) == LINKS
    assert set(choices(Checks)) == set(CHECKS)


def test_every_corruption_name_is_a_corruption_function():
    from lore.attacks import corruptions

    assert list(corruptions.CORRUPTIONS) == list(choices(Corruption))
    assert all(corruptions.CORRUPTIONS[name] is getattr(corruptions, name) for name in choices(Corruption))


def test_a_name_outside_the_set_is_refused_with_the_set_and_the_value():
    assert check_choice("fused", Passes, "passes") == "fused"
    with pytest.raises(ValueError, match=r"passes must be one of \('fused', 'sequential'\), got 'twice'"):
        check_choice("twice", Passes, "passes")


def test_a_literal_field_of_a_config_is_checked_and_offered_as_the_flags_choices(capsys):
    from lore.cli import build_parser
    from lore.training.config import TrainConfig

    with pytest.raises(ValueError, match=r"dual_link must be one of \('softplus', 'projected'\), got 'relu'"):
        TrainConfig(dual_link="relu")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--dual-link", "relu"])
    error = capsys.readouterr().err
    assert "invalid choice: 'relu'" in error and "softplus" in error and "projected" in error
    assert typing.get_args(typing.get_type_hints(TrainConfig)["passes"]) == ("auto", "fused", "sequential")


def test_the_vocabulary_loads_without_torch():
    code = "import sys, lore.vocabulary, lore.presets, lore.registry, lore.training.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
