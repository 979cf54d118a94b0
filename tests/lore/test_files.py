"""lore.files: the one writer (never through a symbolic link) and the staged folders (complete or absent)."""

from __future__ import annotations

import hashlib

import pytest

from lore.files import (INCOMPLETE, SymlinkRefused, check_complete, missing_folder_hint, open_append, partial_folders,
                        read_own_text, staged_folder, write_bytes_atomic, write_text_atomic)


def append_line(path, line: str) -> None:
    with open_append(path) as handle:
        handle.write(line + "\n")


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def victim(tmp_path):
    """A file outside the folder lore writes in, which a planted link points at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret.txt"
    path.write_text("do not touch\n")
    path.chmod(0o600)
    return path


def test_the_writer_refuses_a_symlink_at_its_target_and_leaves_the_victim_alone(tmp_path, victim):
    folder = tmp_path / "run"
    folder.mkdir()
    before = _digest(victim)
    (folder / "summary.json").symlink_to(victim)
    with pytest.raises(SymlinkRefused, match="refusing to write through the symbolic link .*summary.json"):
        write_text_atomic(folder / "summary.json", "{}")
    assert _digest(victim) == before and (folder / "summary.json").is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == ["summary.json"]  # no temporary left behind


def test_appends_and_reads_of_lores_own_files_refuse_a_symlink(tmp_path, victim):
    """metrics.jsonl was opened with open(..., "a") and unreadable_images.txt read back on resume: a planted link
    made lore append to, or read, a file elsewhere."""
    before = _digest(victim)
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(SymlinkRefused):
        append_line(tmp_path / "metrics.jsonl", "{}")
    with pytest.raises(SymlinkRefused):
        open_append(tmp_path / "metrics.jsonl")
    with pytest.raises(SymlinkRefused, match="refusing to read"):
        read_own_text(tmp_path / "metrics.jsonl")
    assert _digest(victim) == before
    append_line(tmp_path / "real.jsonl", "a")
    append_line(tmp_path / "real.jsonl", "b")
    assert read_own_text(tmp_path / "real.jsonl") == "a\nb\n"


def test_written_files_get_the_mode_open_would_give_them(tmp_path):
    """mkstemp makes 0600 files; an export meant for publishing must be readable as open() would make it."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with staged_folder(final) as staging:
            (staging / "config.json").write_text("{}")
            assert (staging / INCOMPLETE).is_file()
            raise RuntimeError("killed half-way")
    assert not final.exists() and partial_folders(final) == []  # the staging folder is removed on an error
    with staged_folder(final) as staging:
        (staging / "config.json").write_text("{}")
    assert sorted(p.name for p in final.iterdir()) == ["config.json"]
    check_complete(final)


def test_a_staging_folder_left_by_a_killed_writer_is_refused_by_name(tmp_path):
    final = tmp_path / "export"
    left = tmp_path / ".export.partial-abc123"
    left.mkdir()
    (left / INCOMPLETE).write_text("")
    with pytest.raises(ValueError, match="incomplete: the job writing it was interrupted"):
        check_complete(left)
    assert str(left) in missing_folder_hint(final)
    (left / INCOMPLETE).unlink()  # killed between removing the marker and the rename: the name still says so
    with pytest.raises(ValueError, match="incomplete"):
        check_complete(left)


def test_a_staged_folder_refuses_a_non_empty_target_and_replaces_only_what_it_owns(tmp_path, victim):
    final = tmp_path / "out"
    final.mkdir()
    (final / "config.json").write_text("the run's own")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        with staged_folder(final):
            pass
    assert (final / "config.json").read_text() == "the run's own"
    link = tmp_path / "export"
    link.symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(SymlinkRefused):
        with staged_folder(link):
            pass
    before = {p.name: _digest(p) for p in victim.parent.iterdir()}
    with staged_folder(link, replace=True) as staging:  # a run's own export/: the link is removed, not followed
        (staging / "weights").write_text("new")
    assert not link.is_symlink() and (link / "weights").read_text() == "new"
    assert {p.name: _digest(p) for p in victim.parent.iterdir()} == before
    with staged_folder(final, replace=True) as staging:  # a real folder is replaced whole
        (staging / "weights").write_text("newer")
    assert sorted(p.name for p in final.iterdir()) == ["weights"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "out", "outside"]  # nothing left aside
