"""A symbolic link planted at any path a train -> eval -> export -> hf-export sequence writes changes no file
outside the run and output folders: lore refuses to write through it (naming it) and the victim keeps its bytes.

The clean sequence runs first and shows that every path planted below is one the sequence really writes."""

from __future__ import annotations

import hashlib

import pytest

from lore.cli import main

#: (folder, relative path) of every file or folder the sequence writes; "run" is the training run, "eval" the
#: evaluation output, "hf" the converted export
WRITTEN = [("run", "config.json"), ("run", "last.pt"), ("run", "metrics.jsonl"), ("run", "summary.json"),
           ("run", "export"), ("run", "unreadable_images.txt"), ("run", "probe_images.txt"),
           ("run", "training_curves.png"), ("run", "export/README.md"), ("run", "export/evaluation.json"),
           ("eval", "report.json"), ("eval", "report.md"), ("eval", "robust_accuracy.png"),
           ("eval", "unreadable_images.txt"), ("hf", ""), ("hf", "config.json")]


@pytest.fixture
def images(tmp_path_factory, write_digits):
    """An image folder of 30 digits and one file that is no image (so both unreadable lists are written)."""
    root = write_digits(tmp_path_factory.mktemp("data") / "digits", range(30))
    (root / "zero" / "broken.png").write_bytes(b"not an image")
    return root


def _sequence(tmp_path, tiny_clip_dir, images, lore_cache) -> dict[str, int]:
    run, out, hf = tmp_path / "run", tmp_path / "eval", tmp_path / "hf"
    codes = {"train": main(["train", "--model", f"local-dir:{tiny_clip_dir}", "--data", str(images), "--output",
                            str(run), "--max-steps", "1", "--batch-size", "4", "--pgd-steps", "1",
                            "--probe-every", "0", "--device", "cpu", "--cache-dir", str(lore_cache),
                            "--method", "fare"])}
    codes["eval"] = main(["eval", "--model", str(run), "--data", str(images), "--output", str(out), "--attacks", "",
                          "--samples", "64", "--device", "cpu", "--cache-dir", str(lore_cache)])
    codes["export"] = main(["export", str(run), "--format", "hf", "--output", str(hf)])
    return codes


def test_the_clean_sequence_writes_every_path_planted_below(tmp_path, tiny_clip_dir, images, lore_cache):
    assert _sequence(tmp_path, tiny_clip_dir, images, lore_cache) == {"train": 0, "eval": 0, "export": 0}
    for folder, name in WRITTEN:
        assert (tmp_path / folder / name).exists(), (folder, name)


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("folder,name", WRITTEN, ids=[f"{f}/{n}" for f, n in WRITTEN])
def test_a_link_planted_at_a_written_path_changes_nothing_outside(tmp_path, tiny_clip_dir, images, lore_cache,
                                                                    capsys, folder, name):
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "victim.txt").write_text("precious\n")
    (outside / "folder" / "inside.txt").write_text("precious too\n")
    before = _digest(outside)
    if folder == "run" and name.startswith("export/"):  # the run's export/ exists only once training finished
        assert main(["train", "--model", f"local-dir:{tiny_clip_dir}", "--data", str(images), "--output",
                     str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "4", "--pgd-steps", "1",
                     "--probe-every", "0", "--device", "cpu", "--cache-dir", str(lore_cache),
                     "--method", "fare"]) == 0
    link = tmp_path / folder / name if name else tmp_path / folder
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)  # export/README.md: the card training wrote, replaced by the planted link
    is_folder = name in ("export", "")
    link.symlink_to(outside / ("folder" if is_folder else "victim.txt"), target_is_directory=is_folder)
    codes = _sequence(tmp_path, tiny_clip_dir, images, lore_cache)
    said = capsys.readouterr().err
    assert _digest(outside) == before
    assert 2 in codes.values(), codes  # the step that would have written through the link refused
    assert f"symbolic link {link}" in said or (folder == "hf" and name and "exists and is not empty" in said), said
    assert "Traceback" not in said
