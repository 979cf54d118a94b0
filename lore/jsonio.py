"""The JSON files lore writes: strict JSON (a value that is not a number is written as null), written
atomically.

Python's `json.dumps` writes float NaN and infinities as the bare words NaN and Infinity, which
are not JSON (RFC 8259): jq, JavaScript's JSON.parse and most other readers refuse the whole
file. lore measures NaN where a quantity is undefined (e.g. the mean lambda over an empty group
of a probe), so every results, summary and metrics file goes through `dumps`, and readers that
want numbers back use `nulls_as_nan`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def finite_or_null(value: Any) -> Any:
    """`value` with every non-finite float (in dicts, lists and tuples, at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps(value, **kwargs)` with NaN and infinities written as null (`allow_nan=False` guards it)."""
    return json.dumps(finite_or_null(value), allow_nan=False, **kwargs)


def nulls_as_nan(record: dict) -> dict:
    """A flat record read back from a metrics line with its nulls as float NaN (what was measured)."""
    return {key: math.nan if item is None else item for key, item in record.items()}


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to a new temporary file beside `path`, then renames it: a reader (or a job killed mid-write)
    never sees half a file. The temporary is created exclusively under an unpredictable name (`tempfile`), so a
    file or symlink planted in the folder is never written through; it is removed if the write fails."""
    path = Path(path)
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """`text` (UTF-8) into `path` by `write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: Path, value: Any, **kwargs: Any) -> None:
    """`value` as strict JSON (`dumps`, indent 2 unless given) into `path`, atomically."""
    kwargs.setdefault("indent", 2)
    write_text_atomic(path, dumps(value, **kwargs))
