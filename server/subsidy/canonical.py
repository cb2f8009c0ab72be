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


class _Encoder(json.JSONEncoder):
    def __init__(self) -> None:
        super().__init__(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def default(self, o: Any) -> Any:
        return _default(o)

    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        _reject_floats(o)
        return super().iterencode(o, _one_shot)


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
    return "".join(_Encoder().iterencode(obj))


def sha256_hex(obj: Any) -> str:
    """Return the sha256 of the canonical JSON of `obj`, streamed so large settlements stay cheap."""
    digest = hashlib.sha256()
    for chunk in _Encoder().iterencode(obj):
        digest.update(chunk.encode("utf-8"))
    return digest.hexdigest()


def sha256_records(records: Iterable[Any]) -> str:
    """Return the sha256 of a JSON array of records given one by one (same result as sha256_hex(list))."""
    digest = hashlib.sha256()
    encoder = _Encoder()
    digest.update(b"[")
    for i, record in enumerate(records):
        if i:
            digest.update(b",")
        for chunk in encoder.iterencode(record):
            digest.update(chunk.encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()
