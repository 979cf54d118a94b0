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


def test_time_to_accuracy_counts_batches_beside_seconds(tmp_path):
    """Seconds follow the machine's load; the batch at which a probe first reaches a threshold does not."""
    import json

    from lore_clip_support.curves import time_table, time_to_accuracy

    def run(name: str, seconds_per_batch: float, robust: dict) -> object:
        folder = tmp_path / name
        folder.mkdir()
        lines = []
        for step in range(1, 19):
            record = {"step": step, "step_seconds": seconds_per_batch}
            if step in robust:
                record["probe/robust_accuracy"] = robust[step]
            lines.append(json.dumps(record))
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        return folder

    fast = run("a", 0.5, {9: 0.15, 18: 0.25})
    loaded = run("b", 2.0, {9: 0.15, 18: 0.25})  # the same path on a busier machine
    rows = time_to_accuracy({("lore", 16 / 255): [fast, loaded]}, (0.1, 0.2, 0.3))
    by_threshold = {r["threshold"]: r for r in rows}
    assert by_threshold[0.1]["batches"] == (9, 0.0) and by_threshold[0.2]["batches"] == (18, 0.0)
    assert by_threshold[0.1]["seconds"][0] == (4.5 + 18.0) / 2
    assert by_threshold[0.3]["reached"] == 0
    assert "batch 9 (2/2)" in time_table(rows) and "not reached (0/2)" in time_table(rows)
