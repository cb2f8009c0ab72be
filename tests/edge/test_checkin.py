"""Check-in decisions with a fake clock: windows, repeats, unknown, outside, delivery, roster, restart."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.checkin import Checkin, CheckinConfig, Decision, MealWindowConfig, StateStore
from edge.clock import FakeClock
from firmware_bridge.contract import CheckinMethod, DinerEvent, DinerKind, Meal, Roster, RosterEntry, TapDecision

POINT = "p001"
CARD_A, CARD_B, CARD_A2 = "EM:0012345678", "EM:00ABCDEF01", "ID:11010519491231002X"
MODE_CARD = "EM:00CAFE0001"
# 2026-06-01 11:00 in Shanghai is 03:00 UTC.
LUNCH_UTC = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)


def roster(version: int, *entries: RosterEntry) -> Roster:
    return Roster(point=POINT, version=version, issued_at=LUNCH_UTC, entries=list(entries))


ROSTER = roster(
    3,
    RosterEntry(card_id=CARD_A, elder_id="E1", label="张*明"),
    RosterEntry(card_id=CARD_A2, elder_id="E1", label="张*明"),  # the same elder's ID card
    RosterEntry(card_id=CARD_B, elder_id="E2", label="李*", eligible=False),
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Decision] = []

    def __call__(self, decision: Decision) -> None:
        # The body must be a valid DinerEvent once the emitter adds the header.
        DinerEvent.model_validate({**decision.body(), "point": POINT, "device": "r1", "seq": 0,
                                   "ts": decision.at, "clock_synced": True})
        self.events.append(decision)


def make(clock: FakeClock, store: StateStore | None = None, **cfg: Any) -> Checkin:
    c = Checkin(POINT, CheckinConfig(**cfg), clock, store)
    if c.roster_version is None:
        c.apply_roster(ROSTER)
    return c


def tap(c: Checkin, card: str, rec: Recorder, device: str = "r1", **kw: Any) -> TapDecision | None:
    return c.tap(card, CheckinMethod.CARD, device, rec, **kw).decision


def test_accept_then_repeat_in_the_same_window() -> None:
    clock, rec = FakeClock(LUNCH_UTC), Recorder()
    c = make(clock)
    assert tap(c, CARD_A, rec) is TapDecision.ACCEPTED
    clock.advance(600)
    assert tap(c, CARD_A, rec) is TapDecision.REPEAT
    # The same elder with a second card is still a repeat.
    assert tap(c, CARD_A2, rec) is TapDecision.REPEAT
    assert [e.decision for e in rec.events] == [TapDecision.ACCEPTED, TapDecision.REPEAT, TapDecision.REPEAT]
    assert all(e.meal is Meal.LUNCH and e.elder_id == "E1" for e in rec.events)
    assert c.served_count(rec.events[0].local_date, Meal.LUNCH) == 1


def test_next_window_and_next_day_accept_again() -> None:
    clock, rec = FakeClock(LUNCH_UTC), Recorder()
    c = make(clock)
    assert tap(c, CARD_A, rec) is TapDecision.ACCEPTED
    clock.advance(6.5 * 3600)  # 17:30 local: dinner
    assert tap(c, CARD_A, rec) is TapDecision.ACCEPTED
    clock.advance(17.5 * 3600)  # next day 11:00
    assert tap(c, CARD_A, rec) is TapDecision.ACCEPTED
    assert [e.meal for e in rec.events] == [Meal.LUNCH, Meal.DINNER, Meal.LUNCH]


def test_window_edges_are_local_time_half_open() -> None:
    clock, rec = FakeClock(datetime(2026, 6, 1, 2, 29, 59, tzinfo=UTC)), Recorder()  # 10:29:59 local
    c = make(clock)
    assert tap(c, CARD_A, rec) is TapDecision.OUTSIDE_WINDOW
    clock.advance(1)  # 10:30:00
    assert tap(c, CARD_A, rec) is TapDecision.ACCEPTED
    clock.advance(3 * 3600)  # 13:30:00: lunch has ended
    assert tap(c, CARD_B, rec) is TapDecision.OUTSIDE_WINDOW
    assert rec.events[0].meal is None


def test_timezone_is_configurable() -> None:
    # 03:00 UTC is 11:00 in Shanghai (lunch) but 05:00 in Paris (no meal).
    rec = Recorder()
    assert tap(make(FakeClock(LUNCH_UTC)), CARD_A, rec) is TapDecision.ACCEPTED
    assert tap(make(FakeClock(LUNCH_UTC), timezone="Europe/Paris"), CARD_A, rec) is TapDecision.OUTSIDE_WINDOW


def test_custom_windows() -> None:
    windows = [MealWindowConfig(meal=Meal.LUNCH, start=time(11, 30), end=time(12, 0))]
    c = make(FakeClock(LUNCH_UTC), windows=windows)
    assert tap(c, CARD_A, Recorder()) is TapDecision.OUTSIDE_WINDOW


def test_unknown_card_is_reported_with_the_meal() -> None:
    rec = Recorder()
    c = make(FakeClock(LUNCH_UTC))
    assert tap(c, "EM:FFFFFFFFFF", rec) is TapDecision.UNKNOWN_CARD
    assert tap(c, "EM:FFFFFFFFFF", rec) is TapDecision.UNKNOWN_CARD
    assert rec.events[0].meal is Meal.LUNCH and rec.events[0].elder_id is None
    assert rec.events[0].feedback.zh == "未登记卡"


def test_feedback_texts() -> None:
    clock, rec = FakeClock(LUNCH_UTC), Recorder()
    c = make(clock)
    d1 = c.tap(CARD_B, CheckinMethod.CARD, "r1", rec)
    d2 = c.tap(CARD_B, CheckinMethod.CARD, "r1", rec)
    assert (d1.feedback.zh, d1.feedback.en) == ("登记成功", "Checked in")
    assert d1.feedback.label == "李*" and d1.feedback.eligible is False
    assert d2.feedback.zh == "今日已就餐"
    clock.advance(4 * 3600)
    assert c.tap(CARD_B, CheckinMethod.CARD, "r1", rec).feedback.zh == "非就餐时段"


def test_delivery_reader_and_shared_served_state() -> None:
    rec = Recorder()
    c = make(FakeClock(LUNCH_UTC))
    d = c.tap(CARD_A, CheckinMethod.CARD, "kitchen", rec, reader_kind=DinerKind.DELIVERY)
    assert d.kind is DinerKind.DELIVERY and d.decision is TapDecision.ACCEPTED
    assert d.feedback.zh == "代送登记成功"
    # the elder whose lunch was delivered cannot also eat at the point
    assert tap(c, CARD_A, rec) is TapDecision.REPEAT


def test_delivery_mode_card_toggles_one_reader_and_expires() -> None:
    clock, rec = FakeClock(LUNCH_UTC), Recorder()
    c = make(clock, delivery_mode_cards=frozenset({MODE_CARD}), delivery_mode_minutes=10)
    mode = c.tap(MODE_CARD, CheckinMethod.CARD, "r1", rec)
    assert mode.decision is None and mode.delivery_mode is True and not rec.events
    assert mode.feedback.zh == "送餐模式开启"
    d = c.tap(CARD_A, CheckinMethod.CARD, "r1", rec)
    assert d.kind is DinerKind.DELIVERY
    assert c.tap(CARD_B, CheckinMethod.CARD, "r2", rec).kind is DinerKind.TAP  # other reader
    clock.advance(11 * 60)  # mode expired
    assert c.tap("EM:FFFFFFFFFF", CheckinMethod.CARD, "r1", rec).kind is DinerKind.TAP
    # toggle on and off again
    c.tap(MODE_CARD, CheckinMethod.CARD, "r1", rec)
    off = c.tap(MODE_CARD, CheckinMethod.CARD, "r1", rec)
    assert off.delivery_mode is False and not c.in_delivery_mode("r1", clock.now())
    assert len(rec.events) == 3


def test_roster_versions_only_move_forward_and_replace_whole() -> None:
    rec = Recorder()
    c = make(FakeClock(LUNCH_UTC))
    new = roster(4, RosterEntry(card_id="EM:0000000001", elder_id="E9"))
    assert c.apply_roster(new) is True and c.roster_version == 4
    assert tap(c, CARD_A, rec) is TapDecision.UNKNOWN_CARD  # replaced, not merged
    assert tap(c, "EM:0000000001", rec) is TapDecision.ACCEPTED
    assert c.apply_roster(ROSTER) is False and c.roster_version == 4  # older
    assert c.apply_roster(roster(4)) is False  # equal
    other = Roster(point="p999", version=99, issued_at=LUNCH_UTC, entries=[])
    assert c.apply_roster(other) is False and c.roster_version == 4


def test_emit_failure_leaves_no_served_mark() -> None:
    c = make(FakeClock(LUNCH_UTC))

    def broken(decision: Decision) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        c.tap(CARD_A, CheckinMethod.CARD, "r1", broken)
    assert tap(c, CARD_A, Recorder()) is TapDecision.ACCEPTED


def test_restart_keeps_repeats_and_roster(tmp_path: Path) -> None:
    clock, rec = FakeClock(LUNCH_UTC), Recorder()
    store = StateStore(tmp_path / "checkin")
    c = make(clock, store)
    assert tap(c, CARD_A, rec) is TapDecision.ACCEPTED
    c.apply_roster(roster(5, RosterEntry(card_id=CARD_A, elder_id="E1"), RosterEntry(card_id=CARD_B, elder_id="E2")))
    del c
    clock.advance(60)
    again = Checkin(POINT, CheckinConfig(), clock, StateStore(tmp_path / "checkin"))
    assert again.roster_version == 5
    assert tap(again, CARD_A, rec) is TapDecision.REPEAT
    assert tap(again, CARD_B, rec) is TapDecision.ACCEPTED
    clock.advance(86400)
    third = Checkin(POINT, CheckinConfig(), clock, StateStore(tmp_path / "checkin"))
    assert tap(third, CARD_A, rec) is TapDecision.ACCEPTED  # a new day


def test_corrupt_state_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "roster.json").write_text("{not json")
    (tmp_path / "served.json").write_text('{"format": 99}')
    c = Checkin(POINT, CheckinConfig(), FakeClock(LUNCH_UTC), StateStore(tmp_path))
    assert c.roster_version is None
    assert tap(c, CARD_A, Recorder()) is TapDecision.UNKNOWN_CARD


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        CheckinConfig(timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        MealWindowConfig(meal=Meal.LUNCH, start=time(13), end=time(11))
    with pytest.raises(ValidationError):
        CheckinConfig(windows=(MealWindowConfig(meal=Meal.LUNCH, start=time(11), end=time(13)),
                               MealWindowConfig(meal=Meal.DINNER, start=time(12), end=time(14))))
    with pytest.raises(ValidationError):
        CheckinConfig(surprise=1)  # type: ignore[call-arg]
    # YAML 1.1 reads 11:30 as 690
    assert MealWindowConfig.model_validate({"meal": "lunch", "start": 690, "end": "13:00"}).start == time(11, 30)
