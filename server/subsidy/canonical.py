"""Canonical JSON for hashing: sorted keys, no spaces, UTF-8, Decimals and dates as strings, no floats."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        if obj.tzinfo is None:
            raise TypeError("naive datetime in canonical JSON")
        # One spelling per instant, whatever offset the source used.
        return obj.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(obj, date | time):
        return obj.isoformat()
    if isinstance(obj, frozenset | set):
        return sorted(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} canonically")


def instant(moment: datetime) -> str:
    """One spelling per instant: UTC, ISO 8601, 'Z'."""
    return str(_default(moment))


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
)


def _reject_floats(obj: Any) -> None:
    # Money and figures must not pass through binary floating point: the hash would depend on it.
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            raise TypeError("float in canonical JSON; use Decimal or str")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def dumps(obj: Any) -> str:
    """Encode `obj` as canonical JSON text."""
    _reject_floats(obj)
    return _ENCODER.encode(obj)


def sha256_hex(obj: Any) -> str:
    """Return the sha256 of dumps(obj), fed piecewise so a large settlement is never one string.

    Records inside top-level lists are encoded one by one without the float scan: they come from
    typed dataclasses whose canonical() emits Decimals, ints and strings only.
    """
    digest = hashlib.sha256()
    if isinstance(obj, dict):
        digest.update(b"{")
        for i, key in enumerate(sorted(obj)):
            if i:
                digest.update(b",")
            digest.update(_ENCODER.encode(key).encode("utf-8") + b":")
            value = obj[key]
            if isinstance(value, list | tuple):
                _feed_records(digest, value)
            else:
                digest.update(dumps(value).encode("utf-8"))
        digest.update(b"}")
    elif isinstance(obj, list | tuple):
        _feed_records(digest, obj)
    else:
        digest.update(dumps(obj).encode("utf-8"))
    return digest.hexdigest()


def _feed_records(digest: Any, records: Iterable[Any]) -> None:
    digest.update(b"[")
    for i, record in enumerate(records):
        if i:
            digest.update(b",")
        digest.update(_ENCODER.encode(record).encode("utf-8"))
    digest.update(b"]")


def sha256_records(records: Iterable[Any]) -> str:
    """Return the sha256 of a JSON array of records given one by one (same result as sha256_hex(list))."""
    digest = hashlib.sha256()
    _feed_records(digest, records)
    return digest.hexdigest()
