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
