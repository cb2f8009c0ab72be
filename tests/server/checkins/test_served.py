"""Distinct elders served per meal, unknown cards and API deliveries, on the real database."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from .conftest import make_point, resident_id

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 6, 3, tzinfo=TZ)


def at(hour: int, minute: int = 0, days: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute) + timedelta(days=days)


class Taps:
    """Diner events as the ingest worker stores them (one device, increasing seq)."""

    def __init__(self, dsn: str, point: str) -> None:
        self.dsn, self.point, self.seq = dsn, point, 0

    def tap(self, when: datetime, card: str, meal: str | None, decision: str = "accepted",
            kind: str = "tap") -> None:
        with psycopg.connect(self.dsn) as conn:
            conn.execute(
                "INSERT INTO diner_events (time, point_id, device_id, seq, kind, method, card_id, meal, decision,"
                " clock_synced) VALUES (%s, %s, 'reader1', %s, %s, 'card', %s, %s, %s, true)",
                (when, self.point, self.seq, kind, card, meal, decision))
        self.seq += 1


def elder(client, point: str, **over) -> dict:
    body = {"name": "刘阿婆", "id_number": resident_id("19440101", male=False), "hukou_local": True, **over}
    r = client.post(f"/api/v1/points/{point}/elders", json=body)
    assert r.status_code == 201, r.text
    return r.json()["elder"]


def bind(client, point: str, elder_id: str, card: str) -> None:
    r = client.post(f"/api/v1/points/{point}/elders/{elder_id}/cards", json={"card": card, "at": at(0).isoformat()})
    assert r.status_code == 200, r.text


@pytest.fixture
def point(tsdb_dsn, unique_point_id):
    make_point(tsdb_dsn, unique_point_id, f"镇{unique_point_id}", f"村{unique_point_id}")
    return unique_point_id


def meals(client, point: str, day: str = "2026-06-03", **params) -> dict:
    r = client.get(f"/api/v1/points/{point}/served", params={"from": day, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_distinct_elders_per_meal_follow_card_bindings_at_tap_time(api_as, clock, point, tsdb_dsn):
    clock.now = at(9)
    admin = api_as("bureau_admin")
    a, b, c = elder(admin, point), elder(admin, point), elder(admin, point)
    bind(admin, point, a["id"], "EM:00000000A1")
    taps = Taps(tsdb_dsn, point)
    taps.tap(at(11, 30), "EM:00000000A1", "lunch")
    taps.tap(at(11, 31), "EM:00000000A1", "lunch", "repeat")
    taps.tap(at(11, 40), "ID:" + b["id_number"], "lunch")  # resident ID card: implicit binding
    taps.tap(at(11, 45), "EM:00000000FF", "lunch", "unknown_card")
    taps.tap(at(15, 0), "EM:00000000A1", None, "outside_window")
    taps.tap(at(17, 0), "EM:00000000A1", "dinner")
    taps.tap(at(23, 30, days=-1), "EM:00000000A1", "dinner")  # the previous local day, before the binding
    # At 18:00 A reports the card lost and gets a new one; the old card then goes to C at 18:30.
    clock.now = at(18)
    assert admin.post(f"/api/v1/points/{point}/elders/{a['id']}/cards/replace",
                      json={"card": "EM:00000000A2"}).status_code == 200
    taps.tap(at(18, 10), "EM:00000000A1", "dinner", "unknown_card")  # old card after the replacement
    clock.now = at(18, 30)
    assert admin.post(f"/api/v1/points/{point}/elders/{a['id']}/cards/EM:00000000A1/release").status_code == 200
    r = admin.post(f"/api/v1/points/{point}/elders/{c['id']}/cards", json={"card": "EM:00000000A1"})
    assert r.status_code == 200, r.text
    taps.tap(at(18, 40), "EM:00000000A1", "dinner")  # now C's
    taps.tap(at(18, 45), "EM:00000000A2", "dinner", "repeat")  # A's new card: A again, counted once

    out = meals(admin, point, elders="true")
    by_meal = {m["meal"]: m for m in out["meals"]}
    assert set(by_meal) == {"lunch", "dinner", "unassigned"}
    assert (by_meal["lunch"]["elders"], by_meal["lunch"]["at_point"], by_meal["lunch"]["events"]) == (2, 2, 4)
    assert by_meal["lunch"]["unknown_card_events"] == 1
    assert by_meal["unassigned"]["elders"] == 0 and by_meal["unassigned"]["events"] == 1
    assert (by_meal["dinner"]["elders"], by_meal["dinner"]["lost_card_events"]) == (2, 1)
    served = {(e["meal"], e["elder_id"]) for e in out["elders"]}
    assert served == {("lunch", a["id"]), ("lunch", b["id"]), ("dinner", a["id"]), ("dinner", c["id"])}
    assert all("*" in e["label"] for e in out["elders"])
    previous = meals(admin, point, day="2026-06-02")["meals"]
    assert [(m["meal"], m["elders"], m["unknown_card_events"]) for m in previous] == [("dinner", 0, 1)]
    two_days = meals(admin, point, day="2026-06-02", to="2026-06-03")["meals"]
    assert len(two_days) == 4


def test_unknown_cards_list_until_registered(api_as, clock, point, tsdb_dsn):
    clock.now = at(13)
    admin = api_as("bureau_admin")
    taps = Taps(tsdb_dsn, point)
    taps.tap(at(11, 0), "EM:0000000B01", "lunch", "unknown_card")
    taps.tap(at(12, 0), "EM:0000000B01", "lunch", "unknown_card")
    taps.tap(at(11, 30), "UID:04A1B2C5", "lunch", "unknown_card")
    rows = admin.get(f"/api/v1/points/{point}/unknown-cards").json()
    assert [(r["card_id"], r["taps"], r["devices"]) for r in rows] == [
        ("EM:0000000B01", 2, ["reader1"]), ("UID:04A1B2C5", 1, ["reader1"])]
    assert rows[0]["first_seen"] < rows[0]["last_seen"]
    county = admin.get("/api/v1/cards/unknown", params={"from": "2026-06-01", "to": "2026-06-03"}).json()
    assert {(r["point_id"], r["card_id"]) for r in county} >= {(point, "EM:0000000B01"), (point, "UID:04A1B2C5")}
    e = elder(admin, point)
    bind(admin, point, e["id"], "EM:0000000B01")
    rows = admin.get(f"/api/v1/points/{point}/unknown-cards").json()
    assert [r["card_id"] for r in rows] == ["UID:04A1B2C5"]
    assert admin.get(f"/api/v1/points/{point}/unknown-cards", params={"from": "2026-06-04"}).status_code == 422


def test_api_delivery_is_a_diner_event_counted_once_per_meal(api_as, clock, point, tsdb_dsn):
    clock.now = at(12)
    admin = api_as("bureau_admin")
    a, b = elder(admin, point), elder(admin, point)
    caregiver = api_as("caregiver", point_ids=[point])
    r = caregiver.post(f"/api/v1/points/{point}/deliveries", json={"elder_id": a["id"], "meal": "lunch"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["kind"], first["method"], first["decision"], first["device_id"]) == (
        "delivery", "manual", "accepted", "api-delivery")
    r = caregiver.post(f"/api/v1/points/{point}/deliveries",
                       json={"elder_id": a["id"], "meal": "lunch", "at": at(12, 5).isoformat()})
    assert r.json()["decision"] == "repeat" and r.json()["seq"] > first["seq"]
    # B tapped at the point first; a delivery for the same meal is a repeat.
    Taps(tsdb_dsn, point).tap(at(11, 50), "ID:" + b["id_number"], "lunch")
    assert caregiver.post(f"/api/v1/points/{point}/deliveries",
                          json={"elder_id": b["id"], "meal": "lunch"}).json()["decision"] == "repeat"
    lunch = next(m for m in meals(admin, point)["meals"] if m["meal"] == "lunch")
    assert (lunch["elders"], lunch["delivered"], lunch["at_point"], lunch["events"]) == (2, 2, 1, 4)
    with psycopg.connect(tsdb_dsn) as conn:
        receipts = conn.execute("SELECT count(*) FROM message_receipts WHERE point_id = %s AND device_id ="
                                " 'api-delivery'", (point,)).fetchone()
    assert receipts == (3,)
    # Who may record: not a viewer; not for a deceased elder; not in the future.
    assert api_as("bureau_viewer").post(f"/api/v1/points/{point}/deliveries",
                                        json={"elder_id": a["id"], "meal": "dinner"}).status_code == 403
    assert admin.patch(f"/api/v1/points/{point}/elders/{b['id']}",
                       json={"status": "deceased", "status_date": "2026-06-03"}).status_code == 200
    assert caregiver.post(f"/api/v1/points/{point}/deliveries",
                          json={"elder_id": b["id"], "meal": "dinner"}).status_code == 409
    assert caregiver.post(f"/api/v1/points/{point}/deliveries", json={
        "elder_id": a["id"], "meal": "dinner", "at": at(18, days=1).isoformat()}).status_code == 409
    assert caregiver.post(f"/api/v1/points/{point}/deliveries",
                          json={"elder_id": "nobody", "meal": "dinner"}).status_code == 404
