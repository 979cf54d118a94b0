"""`lore eval --data`: the unreadable-image policy of `lore train`, shared (lore.data.unreadable)."""

from __future__ import annotations

import json

from lore.cli import main


def test_eval_skips_and_lists_an_unreadable_image_as_train_does(tmp_path, capsys, write_digits, lore_cache):
    """lore eval stopped at the first corrupt image while lore train skipped and listed it."""
    images = write_digits(tmp_path / "digits", range(40))
    (images / "zero" / "broken.png").write_bytes(b"not an image")
    common = ["--model", "digits-cnn", "--data", str(images), "--attacks", "", "--samples", "64", "--device", "cpu",
              "--cache-dir", str(lore_cache)]
    assert main(["eval", *common, "--output", str(tmp_path / "skip")]) == 0
    report = json.loads((tmp_path / "skip" / "report.json").read_text())
    assert len(report["unreadable_images"]) == 1 and "broken.png" in report["unreadable_images"][0]
    assert any("1 undecodable image(s) were replaced" in w for w in report["warnings"])
    assert "broken.png" in (tmp_path / "skip" / "unreadable_images.txt").read_text()
    capsys.readouterr()
    assert main(["eval", *common, "--output", str(tmp_path / "stop"), "--no-skip-unreadable"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "broken.png cannot be decoded" in said[-1]
