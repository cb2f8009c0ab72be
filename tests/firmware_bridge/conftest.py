"""Helpers for codec tests: drive a sans-IO decode the way the I/O edge does, in several chunkings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

DecodeAll = Callable[[Callable[[bytearray], tuple[int, Any]], Iterable[bytes]], tuple[list[Any], int]]


def _decode_all(decode: Callable[[bytearray], tuple[int, Any]], chunks: Iterable[bytes]) -> tuple[list[Any], int]:
    """Feed chunks one by one; return the frames and how many bytes are left undecoded."""
    buf = bytearray()
    frames: list[Any] = []
    for chunk in chunks:
        buf += chunk
        while buf:
            used, frame = decode(buf)
            assert 0 <= used <= len(buf)
            if used == 0:
                break
            if frame is not None:
                frames.append(frame)
            del buf[:used]
    return frames, len(buf)


def _chunkings(data: bytes) -> dict[str, list[bytes]]:
    """The same bytes whole, in halves and byte by byte."""
    half = len(data) // 2
    return {
        "whole": [data],
        "halves": [data[:half], data[half:]],
        "bytewise": [data[i : i + 1] for i in range(len(data))],
    }


@pytest.fixture
def decode_all() -> DecodeAll:
    return _decode_all


@pytest.fixture
def chunkings() -> Callable[[bytes], dict[str, list[bytes]]]:
    return _chunkings
