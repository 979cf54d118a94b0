"""Files lore writes are strict JSON: non-finite numbers become null and read back as NaN."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from lore.jsonio import dumps, finite_or_null, nulls_as_nan

numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.none() | st.text(max_size=3)
values = st.recursive(numbers, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                             max_size=3), max_leaves=12)


def _refuse(constant):
    raise AssertionError(f"{constant} written")


def _same(original, read):
    """`read` is `original` with non-finite floats as None (tuples as lists)."""
    if isinstance(original, float) and not math.isfinite(original):
        return read is None
    if isinstance(original, dict):
        return set(original) == set(read) and all(_same(original[k], read[k]) for k in original)
    if isinstance(original, (list, tuple)):
        return len(original) == len(read) and all(_same(a, b) for a, b in zip(original, read))
    return original == read


@given(values)
def test_dumps_is_strict_json_with_nulls_where_numbers_were_not_finite(value):
    read = json.loads(dumps(value), parse_constant=_refuse)
    assert _same(value, read)


def test_a_metrics_record_round_trips_its_nan():
    record = {"step": 3, "probe/lambda_near_mean": math.nan, "probe/lambda_inside_mean": 0.5, "loss": math.inf}
    line = dumps(record)
    assert "NaN" not in line and "Infinity" not in line
    back = nulls_as_nan(json.loads(line))
    assert math.isnan(back["probe/lambda_near_mean"]) and back["probe/lambda_inside_mean"] == 0.5
    assert back["step"] == 3 and finite_or_null((1.0, math.nan)) == [1.0, None]


def test_write_json_replaces_the_file_whole_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from lore import jsonio

    path = tmp_path / "results.json"
    jsonio.write_json(path, {"status": "finished", "ratio": math.nan})
    assert json.loads(path.read_text(), parse_constant=_refuse) == {"status": "finished", "ratio": None}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]

    def interrupted(source, target):  # killed between writing and renaming: the old file is untouched
        raise KeyboardInterrupt

    from lore import files

    monkeypatch.setattr(files.os, "replace", interrupted)
    try:
        jsonio.write_json(path, {"status": "interrupted"})
    except KeyboardInterrupt:
        pass
    assert json.loads(path.read_text())["status"] == "finished"


def test_an_atomic_write_never_follows_a_symlink_planted_beside_its_target(tmp_path):
    """The temporary was `.report.json.<pid>.tmp`, predictable: a symlink planted there redirected the write to a
    file outside the folder. Now it is created exclusively under a random name."""
    import os

    from lore.jsonio import write_text_atomic

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "out"
    folder.mkdir()
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (folder / f".report.json.{pid}.tmp").symlink_to(outside)
    write_text_atomic(folder / "report.json", '{"a": 1}')
    assert outside.read_text() == "keep me"
    assert (folder / "report.json").read_text() == '{"a": 1}' and not (folder / "report.json").is_symlink()
    assert sorted(p.name for p in folder.iterdir() if not p.is_symlink()) == ["report.json"]
