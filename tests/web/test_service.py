"""Pure parts of the dashboards: the shared day-count cache (fake clock) and group totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.web import service
from server.web.service import CountCache, Group, PointRow

T0 = datetime(2026, 11, 2, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[tuple[datetime, datetime]]:
    """Replace the one SQL seam: each call is recorded and answers a count that grows."""
    calls: list[tuple[datetime, datetime]] = []

    def accepted_by_point(conn: Any, start: datetime, end: datetime) -> dict[str, int]:
        calls.append((start, end))
        return {"p1": len(calls)}

    monkeypatch.setattr(service.repository, "accepted_by_point", accepted_by_point)
    return calls


def test_cache_answers_from_memory_within_its_ttl(queries: list[Any]) -> None:
    clock = FakeClock()
    cache = CountCache(monotonic=clock)
    end = T0 + timedelta(days=1)
    assert cache.get(None, T0, end, ttl_s=15) == {"p1": 1}  # type: ignore[arg-type]
    clock.t += 14.9
    assert cache.get(None, T0, end, ttl_s=15) == {"p1": 1}  # type: ignore[arg-type]
    clock.t += 0.2
    assert cache.get(None, T0, end, ttl_s=15) == {"p1": 2}  # type: ignore[arg-type]
    assert len(queries) == 2


def test_cache_keys_by_range_and_evicts_the_oldest(queries: list[Any]) -> None:
    clock = FakeClock()
    cache = CountCache(monotonic=clock, max_entries=2)
    days = [T0 + timedelta(days=i) for i in range(4)]
    for d in days[:3]:
        clock.t += 1
        cache.get(None, d, d + timedelta(days=1), ttl_s=600)  # type: ignore[arg-type]
    assert len(queries) == 3
    cache.get(None, days[2], days[3], ttl_s=600)  # type: ignore[arg-type]  # still cached
    assert len(queries) == 3
    cache.get(None, days[0], days[1], ttl_s=600)  # type: ignore[arg-type]  # evicted: asked again
    assert len(queries) == 4


def test_group_totals_sum_points_and_children() -> None:
    a = PointRow("a", None, "T", "V1", devices=2, devices_online=1, today=10, last_week=8, expected=12.4, alerts=1)
    b = PointRow("b", None, "T", "V1", devices=2, devices_online=0, today=0, last_week=3, expected=None)
    c = PointRow("c", None, "T", "V2", devices=1, devices_online=1, today=5, last_week=5, expected=4.4)
    town = Group("T", children=[Group("V1", points=[a, b]), Group("V2", points=[c])])
    assert town.totals == {"points": 3, "online": 2, "today": 15, "last_week": 16, "expected": 17, "alerts": 1}
    assert Group("empty").totals["expected"] is None


def test_every_key_the_templates_name_is_in_the_table() -> None:
    import re
    from pathlib import Path

    from server.web.i18n import TEXT

    templates = Path(service.__file__).parent / "templates"
    used = set()
    for f in templates.glob("*.html"):
        used |= set(re.findall(r"""t\('([a-z_.0-9]+)'[,)]""", f.read_text(encoding="utf-8")))
    assert len(used) > 50
    assert sorted(used - set(TEXT)) == []
    # Keys built from values: every value the pages can show has its text.
    for prefix, values in {"severity.": ["info", "warning", "alarm", "critical"],
                           "state.": ["open", "acknowledged", "resolved"],
                           "level.": ["normal", "warn", "fault", "comm_lost", "alarm", "alarm2"],
                           "event.": ["opened", "severity_changed", "acknowledged", "cleared", "recurred",
                                      "confirmed", "resolved"],
                           "meal.": ["breakfast", "lunch", "dinner", "unassigned"],
                           "hazard.": ["gas", "electric", "device", "diners", "other"],
                           "role.": ["bureau_admin", "bureau_viewer", "township_officer", "village_officer",
                                     "caregiver"]}.items():
        assert [v for v in values if prefix + v not in TEXT] == [], prefix
