"""Check-in tests reuse the registry's helpers (points in places, ID numbers, clients per role)."""

from __future__ import annotations

from ..registry.conftest import FakeClock, _clear_rosters, api_as, clock, make_point, resident_id

__all__ = ["FakeClock", "_clear_rosters", "api_as", "clock", "make_point", "resident_id"]
