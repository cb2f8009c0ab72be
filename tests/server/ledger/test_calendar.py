"""Missing inspections: periods of each kind, the report window, service days, closures, today."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.auth.scopes import Role
from server.ledger.calendar import (
    InspectionKind,
    Missing,
    PointSpan,
    ServiceCalendar,
    missing_inspections,
    month_bounds,
    period_end,
    period_start,
    periods,
)

D, W, M = InspectionKind.DAILY, InspectionKind.WEEKLY, InspectionKind.MONTHLY
JUNE = month_bounds(2026, 6)  # 2026-06-01 is a Monday; 2026-06-30 a Tuesday


def test_period_of_each_kind() -> None:
    day = date(2026, 6, 17)  # Wednesday
    assert period_start(D, day) == day and period_end(D, day) == date(2026, 6, 18)
    assert period_start(W, day) == date(2026, 6, 15) and period_end(W, date(2026, 6, 15)) == date(2026, 6, 22)
    assert period_start(M, day) == date(2026, 6, 1) and period_end(M, date(2026, 6, 1)) == date(2026, 7, 1)
    assert period_end(M, date(2026, 12, 1)) == date(2027, 1, 1)
    assert period_start(W, date(2027, 1, 1)) == date(2026, 12, 28)  # ISO week across the year's end


def test_window_holds_the_periods_whose_last_day_is_inside() -> None:
    assert len(list(periods(D, *JUNE))) == 30
    weeks = list(periods(W, *JUNE))
    # Weeks ending on Sundays 7, 14, 21, 28 June; the week of Monday 29 June ends in July.
    assert [w[0] for w in weeks] == [date(2026, 6, 1), date(2026, 6, 8), date(2026, 6, 15), date(2026, 6, 22)]
    july_weeks = list(periods(W, *month_bounds(2026, 7)))
    assert july_weeks[0] == (date(2026, 6, 29), date(2026, 7, 6))
    assert list(periods(M, *JUNE)) == [JUNE]
    assert list(periods(D, date(2026, 6, 5), date(2026, 6, 5))) == []


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 1)), st.sampled_from(list(InspectionKind)))
def test_consecutive_months_share_no_period_and_miss_none(first: date, kind: InspectionKind) -> None:
    a = month_bounds(first.year, first.month)
    b = month_bounds(*((a[1].year, a[1].month)))
    both = list(periods(kind, a[0], b[1]))
    assert list(periods(kind, *a)) + list(periods(kind, *b)) == both
    for start, stop in both:
        assert period_start(kind, start) == start and period_end(kind, start) == stop


def point(pid: str = "p1", since: date = date(2026, 1, 1), closed: frozenset[date] = frozenset()) -> PointSpan:
    return PointSpan(pid, since, closed)


def test_nothing_recorded_in_a_finished_month() -> None:
    found = missing_inspections([point()], [], *JUNE, today=date(2026, 7, 3))
    assert sum(1 for m in found if m.kind is D) == 30
    assert sum(1 for m in found if m.kind is W) == 4
    assert [m for m in found if m.kind is M] == [Missing("p1", M, date(2026, 6, 1), date(2026, 7, 1))]
    assert [m.kind for m in found] == [D] * 30 + [W] * 4 + [M]  # by point, kind (daily first), period
    assert {m.responsible for m in found} == {Role.CAREGIVER, Role.VILLAGE_OFFICER, Role.TOWNSHIP_OFFICER}


def test_records_satisfy_their_period_only() -> None:
    records = [("p1", D, date(2026, 6, d)) for d in range(1, 31) if d != 9]
    records += [("p1", W, date(2026, 6, 8)), ("p1", M, date(2026, 6, 1)), ("p2", W, date(2026, 6, 15))]
    found = missing_inspections([point()], records, *JUNE, today=date(2026, 7, 1))
    assert [(m.kind, m.period_start) for m in found] == [
        (D, date(2026, 6, 9)), (W, date(2026, 6, 1)), (W, date(2026, 6, 15)), (W, date(2026, 6, 22))]


def test_periods_not_ended_by_today_are_not_missing() -> None:
    today = date(2026, 6, 17)  # Wednesday
    found = missing_inspections([point()], [("p1", D, date(2026, 6, 3))], *JUNE, today=today)
    days = [m.period_start for m in found if m.kind is D]
    assert days == [date(2026, 6, d) for d in range(1, 17) if d != 3]  # today itself is still open
    assert [m.period_start for m in found if m.kind is W] == [date(2026, 6, 1), date(2026, 6, 8)]
    assert not [m for m in found if m.kind is M]


def test_service_weekdays_closures_and_registration_day() -> None:
    weekdays = ServiceCalendar(frozenset({1, 2, 3, 4, 5}))
    closed = frozenset({date(2026, 6, 19)})  # 端午节 (Friday)
    found = missing_inspections([point(since=date(2026, 6, 10), closed=closed)], [], *JUNE,
                                today=date(2026, 7, 1), calendar=weekdays)
    days = [m.period_start for m in found if m.kind is D]
    assert days[0] == date(2026, 6, 10) and date(2026, 6, 19) not in days
    assert all(d.isoweekday() <= 5 for d in days) and len(days) == 14
    # Weeks before the point existed are not due; the week it opened in is.
    assert [m.period_start for m in found if m.kind is W] == [date(2026, 6, 8), date(2026, 6, 15),
                                                              date(2026, 6, 22)]


def test_a_week_closed_throughout_needs_no_weekly_check() -> None:
    closed = frozenset(date(2026, 6, 8) + timedelta(days=n) for n in range(7))
    found = missing_inspections([point(closed=closed)], [], *JUNE, today=date(2026, 7, 1), kinds=(W,))
    assert [m.period_start for m in found] == [date(2026, 6, 1), date(2026, 6, 15), date(2026, 6, 22)]


def test_a_point_registered_after_the_window_owes_nothing() -> None:
    assert missing_inspections([point(since=date(2026, 7, 2))], [], *JUNE, today=date(2026, 8, 1)) == []


@pytest.mark.parametrize("kinds", [(D,), (W, M), ()])
def test_kind_filter(kinds: tuple[InspectionKind, ...]) -> None:
    found = missing_inspections([point(), point("p2")], [], *JUNE, today=date(2026, 7, 1), kinds=kinds)
    assert {m.kind for m in found} == set(kinds)
    assert {m.point_id for m in found} == ({"p1", "p2"} if kinds else set())
