"""How every `lore` command reports a failure: one line naming the input, and its exit code."""

from __future__ import annotations

import sys

INPUT_ERROR = 2
INTERRUPTED = 130


def fail(command: str, error: BaseException) -> int:
    print(f"lore {command}: {error}", file=sys.stderr)
    return INPUT_ERROR


def os_error(error: OSError) -> str:
    """One line for a file-system failure (full disk, read-only or missing output), naming the file."""
    import errno

    where = f" {error.filename}" if error.filename else ""
    reason = error.strerror or str(error)
    advice = {errno.ENOSPC: "; free space and rerun (files are written atomically: earlier ones are intact)",
              errno.EROFS: "; choose an --output on a writable file system",
              errno.EACCES: "; choose an --output you may write to"}.get(error.errno or 0, "")
    return f"cannot write or read{where}: {reason}{advice}"
