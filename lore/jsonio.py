"""The JSON files lore writes: strict JSON (a value that is not a number is written as null), written
atomically by `lore.files`' writer.

Python's `json.dumps` writes float NaN and infinities as the bare words NaN and Infinity, which
are not JSON (RFC 8259): jq, JavaScript's JSON.parse and most other readers refuse the whole
file. lore measures NaN where a quantity is undefined (e.g. the mean lambda over an empty group
of a probe), so every results, summary and metrics file goes through `dumps`, and readers that
want numbers back use `nulls_as_nan`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .files import write_bytes_atomic, write_text_atomic  # noqa: F401  (the writers every lore file goes through)


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


def write_json(path: Path, value: Any, **kwargs: Any) -> None:
    """`value` as strict JSON (`dumps`, indent 2 unless given) into `path`, atomically."""
    kwargs.setdefault("indent", 2)
    write_text_atomic(path, dumps(value, **kwargs))
