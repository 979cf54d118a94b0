"""How lore writes files and folders: one writer for every file, one stager for every folder it fills.

Two rules, enforced here rather than case by case:

- **A file** is written by `write_bytes_atomic` (and its text/JSON forms in `lore.jsonio`): never through a
  symbolic link at its path (`SymlinkRefused` names it), into a new temporary file in the same folder created
  exclusively under an unpredictable name, then renamed over the target, so a reader or a killed job never sees
  half a file. Logs that grow line by line (`open_append`) are opened with `O_NOFOLLOW`.
- **A folder** of several files (an export, a converted model) is filled in a fresh staging folder beside its
  final path (`staged_folder`), which holds the marker `INCOMPLETE` until everything is written; the marker is
  then removed and the folder renamed into place whole. A job killed at any point leaves either no folder at the
  final path or the complete one; every reader of such folders calls `check_complete`, which refuses a staging
  folder (it still holds the marker) in one line.

Reading back what lore itself wrote (a list it appends to on resume) goes through `read_own_text`, which refuses
a symbolic link too: a planted link must not make lore read, or append to, a file elsewhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

#: the file a staging folder holds until it is complete (`staged_folder`)
INCOMPLETE = ".lore-incomplete"
#: what the staging folders of `final` are called: `.NAME.partial-XXXXXXXX`
PARTIAL = ".partial-"


def _read_umask() -> int:
    mask = os.umask(0)  # read once, at import: os.umask can only be read by setting it
    os.umask(mask)
    return mask


#: the process's umask, read once at import: the mode `open` would give a new file or folder
UMASK = _read_umask()


class SymlinkRefused(OSError):
    """lore was asked to write (or read back its own file) at a path that is a symbolic link."""


def refuse_symlink(path: Union[str, Path], action: str = "write") -> None:
    """Raises `SymlinkRefused` when `path` itself is a symbolic link (a link elsewhere in its folders is the
    user's own layout and is followed, as every program does)."""
    path = Path(path)
    if path.is_symlink():
        raise SymlinkRefused(errno.ELOOP, f"refusing to {action} through the symbolic link {path} (-> "
                             f"{os.readlink(path)}): lore writes its files in place of links, never through them; "
                             "remove the link and run again", str(path))


def write_bytes_atomic(path: Union[str, Path], data: bytes) -> None:
    """Writes `data` to `path` through a new temporary file beside it and a rename.

    Raises:
        SymlinkRefused: `path` is a symbolic link (nothing is written). OSError: the write failed (the temporary
            is removed; `path` is untouched).
    """
    path = Path(path)
    refuse_symlink(path)
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(partial, 0o666 & ~UMASK)  # mkstemp makes 0600: give the file the mode `open` would
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Union[str, Path], text: str) -> None:
    """`text` (UTF-8) into `path` by `write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def open_append(path: Union[str, Path]) -> IO[str]:
    """A text handle appending to `path` (created if absent), opened with `O_NOFOLLOW`.

    Raises:
        SymlinkRefused: `path` is a symbolic link.
    """
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            refuse_symlink(path)
        raise
    return os.fdopen(descriptor, "a", encoding="utf-8")


def read_own_text(path: Union[str, Path]) -> str:
    """The text of a file lore wrote (UTF-8), refusing a symbolic link at `path` (`SymlinkRefused`)."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ELOOP:
            refuse_symlink(path, "read")
        raise
    with os.fdopen(descriptor, "r", encoding="utf-8") as handle:
        return handle.read()


def partial_folders(final: Union[str, Path]) -> list[Path]:
    """The staging folders an interrupted `staged_folder(final)` left beside `final`."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    return sorted(p for p in final.parent.glob(f".{final.name}{PARTIAL}*") if p.is_dir() and not p.is_symlink())


def check_complete(folder: Union[str, Path], what: str = "folder") -> None:
    """Refuses a folder that a lore writer left incomplete (a staging folder: it holds `INCOMPLETE`).

    Raises:
        ValueError: naming the folder and what to do.
    """
    folder = Path(folder)
    if (folder / INCOMPLETE).exists() or PARTIAL in folder.name:
        raise ValueError(f"{what} {folder} is incomplete: the job writing it was interrupted before it finished "
                         f"(it holds {INCOMPLETE}); delete it and write it again")


def missing_folder_hint(final: Union[str, Path]) -> str:
    """' (an interrupted write left ...)' when staging folders of `final` exist, else ''."""
    left = partial_folders(final)
    return (f"; an interrupted write left {left[0]} incomplete: delete it and write the folder again"
            if left else "")


@contextmanager
def staged_folder(final: Union[str, Path], *, replace: bool = False) -> Iterator[Path]:
    """Yields a fresh, empty staging folder to fill; on success renames it to `final` whole.

    Args:
        final: the folder to create. Its parent is created.
        replace: whether an existing `final` (a folder lore owns, e.g. a run's export/) is replaced; without
            it, `final` must be absent or an empty folder.

    Raises:
        SymlinkRefused: `final` is a symbolic link and `replace` is False (with `replace`, the link itself is
            removed, never followed). FileExistsError: `final` exists, is not empty, and `replace` is False.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_symlink() and not replace:
        refuse_symlink(final)
    if not replace and final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(f"{final} exists and is not empty: choose a new or empty folder")
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}{PARTIAL}", dir=final.parent))
    try:
        os.chmod(staging, 0o777 & ~UMASK)
        (staging / INCOMPLETE).write_text("written by lore; the job writing this folder did not finish\n")
        yield staging
        (staging / INCOMPLETE).unlink()
        _move_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, final: Path) -> None:
    """Renames `staging` to `final`, removing what stood there (a link is unlinked, never followed)."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        final.unlink()
    elif final.is_dir():
        if not any(final.iterdir()):
            final.rmdir()
        else:
            aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, aside / final.name)
            os.rename(staging, final)
            shutil.rmtree(aside, ignore_errors=True)  # rmtree never follows the links inside it
            return
    os.rename(staging, final)


__all__ = ["INCOMPLETE", "SymlinkRefused", "check_complete", "missing_folder_hint", "open_append", "partial_folders",
           "read_own_text", "refuse_symlink", "staged_folder", "write_bytes_atomic", "write_text_atomic"]
