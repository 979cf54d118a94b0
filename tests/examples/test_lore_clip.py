"""The main job's configuration of each model: which update count each method takes."""

from __future__ import annotations


def test_the_main_jobs_fare_takes_its_authors_update_and_k_with_the_equal_updates_option(tmp_path):
    """The main job trained every method with K = 5 updates per adversarial batch."""
    from lore_clip import parse_args
    from lore_clip_support.job import settings_for, train_config

    for flags, fare_updates in (([], 1), (["--baseline-updates", "equal"], 5)):
        args = parse_args(flags)
        settings = settings_for(args)
        configs = {m: train_config(args, settings, m, tmp_path, eps=16 / 255, seed=0) for m in ("fare", "naive", "lore")}
        assert {m: c.updates_per_batch for m, c in configs.items()} == {"fare": fare_updates, "naive": 5, "lore": 5}


def test_the_main_job_trains_the_equal_updates_fare_beside_the_authors_fare_by_default(tmp_path):
    from lore_clip import parse_args
    from lore_clip_support.job import settings_for, train_config

    args = parse_args([])
    settings = settings_for(args)
    assert settings["methods"] == ["fare", "fare-k", "naive", "lore"]
    configs = {m: train_config(args, settings, m, tmp_path / m, eps=16 / 255, seed=0) for m in settings["methods"]}
    assert {m: (c.method, c.updates_per_batch) for m, c in configs.items()} == {
        "fare": ("fare", 1), "fare-k": ("fare", 5), "naive": ("naive", 5), "lore": ("lore", 5)}
    tecoa = train_config(parse_args(["--methods", "tecoa,tecoa-k"]), settings, "tecoa-k", tmp_path / "t", eps=16 / 255, seed=0)
    assert (tecoa.method, tecoa.updates_per_batch) == ("tecoa", 5)


def test_method_labels_the_main_job_cannot_run_are_refused(capsys):
    import pytest
    from lore_clip import parse_args

    for flags, message in ((["--methods", "lore-k"], "lore takes K updates per batch already"),
                           (["--methods", "fare,fare-k", "--baseline-updates", "equal"], "the same model twice"),
                           (["--methods", "fare,fare"], "names fare twice"),
                           (["--methods", "frae"], "unknown method 'frae'")):
        with pytest.raises(SystemExit):
            parse_args(flags)
        assert message in capsys.readouterr().err


def test_the_validation_split_is_the_embedded_digits_only(capsys, tmp_path):
    import pytest
    from lore_clip import parse_args
    from lore_clip_support.job import settings_for, train_config

    args = parse_args(["--eval-split", "validation"])
    assert train_config(args, settings_for(args), "lore", tmp_path, eps=16 / 255, seed=0).probe_split == "validation"
    with pytest.raises(SystemExit):
        parse_args(["--eval-split", "validation", "--train-data", "torchvision:CIFAR10:/data"])
    assert "only the embedded digits have a validation part" in capsys.readouterr().err
