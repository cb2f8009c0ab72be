"""The ledger API against the real TimescaleDB: recording by role, evidence from the hypertables,
rectification and sample disposal, missing checks per point, village and township, and scope."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from .conftest import Clock, County, local, seed_alert, seed_safety, seed_telemetry

pytestmark = pytest.mark.integration

AREAS = ("electricity", "gas", "food")


def body(kind: str, at: datetime, *, failed: bool = False, samples: bool = True, **over: Any) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"area": a, "item": f"{a} 检查", "passed": True} for a in AREAS]
    problems: list[dict[str, Any]] = []
    if failed:
        items.append({"area": "gas", "item": "燃气软管", "passed": False, "note": "软管老化开裂"})
        problems = [{"description": "燃气软管老化", "item_index": 3, "rectification": "deadline",
                     "deadline": (at.date() + timedelta(days=3)).isoformat()},
                    {"description": "插线板过载", "rectification": "fixed_at_once", "note": "已拔除电暖器"}]
    out: dict[str, Any] = {"kind": kind, "inspected_at": at.isoformat(), "items": items, "problems": problems}
    if samples and kind == "daily":
        taken = at.replace(hour=11, minute=30) if at.hour >= 12 else at - timedelta(minutes=30)
        out["samples"] = [{"meal": "lunch", "taken_at": taken.isoformat(), "dishes": "米饭 青菜"}]
    return {**out, **over}


def post(api: TestClient, county: County, role: str, point: str, payload: dict[str, Any]) -> Any:
    return api.post(f"/api/v1/ledger/points/{county.points[point]}/inspections", json=payload,
                    headers=county.headers[role])


def test_daily_check_carries_the_days_sensor_evidence(api: TestClient, county: County, tsdb_dsn: str) -> None:
    point = county.points["a1"]
    day = [local(7, 2, 8) + timedelta(minutes=10 * i) for i in range(60)]
    gas = [(t, "gas1", "lel", "%LEL", 2 + (i % 7) * 0.5) for i, t in enumerate(day)]
    gas.append((local(7, 2, 10, 5), "gas1", "lel", "%LEL", 18.5))
    outside = [(local(7, 1, 23, 30), "gas1", "lel", "%LEL", 99.0), (local(7, 3, 0, 10), "gas1", "lel", "%LEL", 88.0)]
    summaries = [(local(7, 2, 12), "elec1", "rc", "mA", 120.0, 100.0, 180.0),
                 (local(7, 2, 13), "elec1", "rc", "mA", 300.0, 150.0, 320.0),
                 (local(7, 2, 14), "elec1", "rc", "mA", 90.0, 80.0, 110.0),
                 (local(7, 2, 12), "elec1", "u", "V", 220.0, 196.5, 231.0),
                 (local(7, 2, 15), "elec1", "u", "V", 221.0, 205.0, 236.2)]
    seed_telemetry(tsdb_dsn, point, gas + outside, summaries)
    seed_safety(tsdb_dsn, point, [
        (local(7, 2, 10), "gas1", "lel", "warn", "normal", 12.0),
        (local(7, 2, 10, 2), "gas1", "lel", "alarm", "warn", 26.0),
        (local(7, 2, 10, 10), "gas1", "lel", "normal", "alarm", 3.0),
        (local(7, 2, 16), "gas1", "lel", "warn", "normal", 11.0),
        (local(7, 1, 16), "gas1", "lel", "alarm", "normal", 40.0),  # the day before: not this day's
    ])
    resp = post(api, county, "caregiver_a1", "a1", body("daily", local(7, 2, 17), failed=True))
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert out["kind"] == "daily" and out["period_start"] == "2026-07-02" and out["period_end"] == "2026-07-03"
    assert out["inspector_role"] == "caregiver" and out["inspector"].startswith("token:")
    ev = out["evidence"]
    assert ev["gas_lel_max"] == max(r[4] for r in gas)
    assert ev["residual_current_ma_max"] == max(s[6] for s in summaries if s[3] == "mA")
    assert (ev["voltage_min"], ev["voltage_max"]) == (196.5, 236.2)
    assert ev["voltage_out_of_range"] == 2  # one summary dipped below 198 V, one rose above 235.4 V
    assert ev["readings"] == len(gas) + len(summaries)
    assert ev["hours_covered"] == 10 and ev["hours_elapsed"] == 24  # the clock is on 3 July
    assert ev["alarms"] == 2 and ev["alarms_by_level"] == {"alarm": 1, "warn": 1} and ev["alarms_not_cleared"] == 1
    assert ev["alerts"] == 0 and ev["alerts_unresolved"] == 0  # the alert tables exist, no alert that day
    assert [i["passed"] for i in out["items"]] == [True, True, True, False]
    deadline, at_once = out["problems"]
    assert deadline["rectification"] == "deadline" and deadline["done_at"] is None and not deadline["overdue"]
    assert at_once["done_at"] is not None and at_once["done_note"] == "已拔除电暖器"
    assert out["samples"][0]["meal"] == "lunch" and out["samples"][0]["kept_long_enough"] is None
    # The same record, read back, and the audit entry of its recording.
    again = api.get(f"/api/v1/ledger/points/{point}/inspections/{out['id']}", headers=county.headers["officer_a"])
    assert again.status_code == 200 and again.json()["evidence"] == ev
    with psycopg.connect(tsdb_dsn) as conn:
        audit = conn.execute("SELECT actor, detail->>'kind' FROM audit_log WHERE action = 'ledger.inspection'"
                             " AND target = %s", (f"point:{point}",)).fetchall()
    assert len(audit) == 1 and audit[0][1] == "daily"


@pytest.mark.parametrize(("role", "kind", "point", "status"), [
    ("caregiver_a1", "weekly", "a1", 403),  # a caregiver does the daily check only
    ("village_a1", "daily", "a1", 403),
    ("village_a1", "monthly", "a1", 403),
    ("officer_a", "weekly", "a2", 403),
    ("viewer", "daily", "a1", 403),
    ("caregiver_a1", "daily", "b1", 404),  # not their point: as if it did not exist
    ("village_a1", "weekly", "a2", 404),
    ("officer_b", "monthly", "a1", 404),
    ("village_a1", "weekly", "a1", 201),
    ("officer_a", "monthly", "a2", 201),
    ("caregiver_b1", "daily", "b1", 201),
])
def test_who_records_which_inspection_where(api: TestClient, county: County, role: str, kind: str, point: str,
                                            status: int) -> None:
    resp = post(api, county, role, point, body(kind, local(7, 3, 9)))
    assert resp.status_code == status, resp.text


def test_records_refused_by_the_ledger_rules(api: TestClient, county: County, clock: Clock) -> None:
    def refused(payload: dict[str, Any], match: str) -> None:
        resp = post(api, county, "caregiver_a1", "a1", payload)
        assert resp.status_code == 422, resp.text
        assert match in resp.text

    refused(body("daily", local(7, 3, 11)), "future")
    refused(body("daily", local(6, 25, 9)), "up to 7 days")
    refused(body("daily", local(7, 3, 9), samples=False), "留样")
    refused(body("daily", local(7, 3, 9), items=[{"area": "gas", "item": "阀门", "passed": True}]),
            "must cover ['electricity', 'food']")
    refused(body("daily", local(7, 3, 9), items=[{"area": "gas", "item": "阀门", "passed": False}]),
            "failed items need")
    clock.set(local(7, 3, 9) - timedelta(days=7))
    assert post(api, county, "caregiver_a1", "a1", body("daily", local(6, 26, 9))).status_code == 201


def test_rectification_and_sample_disposal(api: TestClient, county: County, clock: Clock, tsdb_dsn: str) -> None:
    point = county.points["a1"]
    clock.set(local(7, 1, 18))
    created = post(api, county, "caregiver_a1", "a1", body("daily", local(7, 1, 17), failed=True)).json()
    problem = created["problems"][0]
    sample = created["samples"][0]
    caregiver, viewer = county.headers["caregiver_a1"], county.headers["viewer"]
    base = f"/api/v1/ledger/points/{point}"
    # Past the deadline (4 July) without rectification: overdue.
    clock.set(local(7, 5, 9))
    listed = api.get(f"{base}/inspections", params={"month": "2026-07"}, headers=viewer).json()
    assert [p["overdue"] for p in listed[0]["problems"]] == [True, False]
    done = {"done_at": local(7, 5, 8).isoformat(), "note": "更换燃气软管"}
    assert api.post(f"{base}/problems/{problem['id']}/done", json=done, headers=viewer).status_code == 403
    early = {"done_at": local(7, 1, 16).isoformat(), "note": "x"}
    assert api.post(f"{base}/problems/{problem['id']}/done", json=early, headers=caregiver).status_code == 422
    resp = api.post(f"{base}/problems/{problem['id']}/done", json=done, headers=caregiver)
    assert resp.status_code == 200, resp.text
    assert resp.json()["done_note"] == "更换燃气软管" and not resp.json()["overdue"]
    assert api.post(f"{base}/problems/{problem['id']}/done", json=done, headers=caregiver).status_code == 409
    other = county.points["b1"]
    assert api.post(f"/api/v1/ledger/points/{other}/problems/{problem['id']}/done", json=done,
                    headers=county.headers["caregiver_b1"]).status_code == 404  # the id belongs to another point
    # A sample disposed of after 24 h is recorded, and shown as kept too short.
    taken = datetime.fromisoformat(sample["taken_at"])
    short = {"disposed_at": (taken + timedelta(hours=24)).isoformat()}
    before = {"disposed_at": (taken - timedelta(hours=1)).isoformat()}
    assert api.post(f"{base}/samples/{sample['id']}/disposal", json=before, headers=caregiver).status_code == 422
    resp = api.post(f"{base}/samples/{sample['id']}/disposal", json=short, headers=caregiver)
    assert resp.status_code == 200, resp.text
    assert resp.json()["kept_hours"] == 24.0 and resp.json()["kept_long_enough"] is False
    assert api.post(f"{base}/samples/{sample['id']}/disposal", json=short, headers=caregiver).status_code == 409
    # A second daily check's sample kept 49 h passes.
    clock.set(local(7, 2, 18))
    second = post(api, county, "caregiver_a1", "a1", body("daily", local(7, 2, 17))).json()["samples"][0]
    clock.set(local(7, 5, 9))
    kept = {"disposed_at": (datetime.fromisoformat(second["taken_at"]) + timedelta(hours=49)).isoformat()}
    resp = api.post(f"{base}/samples/{second['id']}/disposal", json=kept, headers=county.headers["village_a1"])
    assert resp.json()["kept_long_enough"] is True
    with psycopg.connect(tsdb_dsn) as conn:
        actions = {r[0] for r in conn.execute("SELECT action FROM audit_log WHERE target = %s", (f"point:{point}",))}
    assert {"ledger.inspection", "ledger.problem_done", "ledger.sample_disposal"} <= actions


def test_evidence_follows_late_data_and_survives_retention(api: TestClient, county: County, clock: Clock,
                                                           tsdb_dsn: str) -> None:
    point = county.points["a2"]
    seed_telemetry(tsdb_dsn, point, [(local(7, 2, 9), "gas1", "lel", "%LEL", 4.0)])
    clock.set(local(7, 2, 10))
    created = post(api, county, "caregiver_a1", "a2", body("daily", local(7, 2, 9)))  # not their point
    assert created.status_code == 404
    headers = county.headers["village_a2"]
    week = api.post(f"/api/v1/ledger/points/{point}/inspections", json=body("weekly", local(7, 2, 9)),
                    headers=headers).json()
    assert week["period_start"] == "2026-06-29" and week["evidence"]["gas_lel_max"] == 4.0
    # The edge was offline; its backlog arrives later in the week.
    seed_telemetry(tsdb_dsn, point, [(local(7, 4, 12), "gas1", "lel", "%LEL", 21.0)])
    clock.set(local(7, 6, 9))
    url = f"/api/v1/ledger/points/{point}/inspections/{week['id']}"
    assert api.get(url, headers=headers).json()["evidence"]["gas_lel_max"] == 21.0
    with psycopg.connect(tsdb_dsn) as conn:
        stored = conn.execute("SELECT evidence->>'gas_lel_max', evidence->>'readings' FROM ledger_inspections"
                              " WHERE id = %s", (week["id"],)).fetchone()
        assert stored == ("21.0", "2")
        conn.execute("DELETE FROM telemetry WHERE point_id = %s", (point,))  # as drop_chunks would
    kept = api.get(url, headers=headers).json()["evidence"]
    assert kept["gas_lel_max"] == 21.0 and kept["readings"] == 2
    fresh = api.get(f"/api/v1/ledger/points/{point}/evidence", params={"start": "2026-06-29", "end": "2026-07-06"},
                    headers=headers).json()
    assert fresh["evidence"]["readings"] == 0  # the raw rows are gone; the ledger kept their summary


def test_alerts_of_the_period_in_the_evidence(api: TestClient, county: County, tsdb_dsn: str) -> None:
    point = county.points["b1"]
    seed_alert(tsdb_dsn, point, local(7, 3, 8), resolved=True)
    seed_alert(tsdb_dsn, point, local(7, 3, 9), resolved=False)
    seed_alert(tsdb_dsn, point, local(7, 2, 9), resolved=False, device="gas2")  # the day before
    seed_safety(tsdb_dsn, point, [(local(7, 3, 8), "gas1", "lel", "alarm", "normal", 31.0),
                                  (local(7, 3, 8, 1), "gas1", "lel", "alarm2", "alarm", 52.0),
                                  (local(7, 3, 8, 20), "gas1", "lel", "normal", "alarm2", 1.0)])
    out = post(api, county, "caregiver_b1", "b1", body("daily", local(7, 3, 9, 30))).json()
    assert (out["evidence"]["alerts"], out["evidence"]["alerts_unresolved"]) == (2, 1)
    detail = api.get(f"/api/v1/ledger/points/{point}/evidence", params={"start": "2026-07-03", "end": "2026-07-04"},
                     headers=county.headers["officer_b"]).json()
    assert detail["evidence"] == out["evidence"]
    (alarm,) = detail["sensor_alarms"]
    assert (alarm["level"], alarm["peak_level"], alarm["value"]) == ("alarm", "alarm2", 31.0)
    assert datetime.fromisoformat(alarm["cleared_at"]) == local(7, 3, 8, 20)
    closed = {a["state"]: a for a in detail["alerts"]}
    assert closed["resolved"]["confirm_note"] == "=阀门已更换" and closed["resolved"]["ack_channel"] == "wecom"
    assert closed["acknowledged"]["resolved_at"] is None


def test_missing_checks_per_point_village_and_township(api: TestClient, county: County, clock: Clock) -> None:
    a1, a2 = county.points["a1"], county.points["a2"]
    # June: a1's caregiver checks every day but the 9th; village a1's officer checks two weeks; the
    # township officer patrols a2 only. a2 has a closed day (端午节, 19 June).
    for d in range(1, 31):
        if d != 9:
            clock.set(local(6, d, 18))
            assert post(api, county, "caregiver_a1", "a1", body("daily", local(6, d, 17))).status_code == 201
    for d in (3, 17):
        clock.set(local(6, d, 18))
        assert post(api, county, "village_a1", "a1", body("weekly", local(6, d, 15))).status_code == 201
    clock.set(local(6, 20, 18))
    assert post(api, county, "officer_a", "a2", body("monthly", local(6, 20, 10))).status_code == 201
    closure = api.post(f"/api/v1/ledger/points/{a2}/closures", json={"day": "2026-06-19", "reason": "端午节"},
                       headers=county.headers["village_a2"])
    assert closure.status_code == 201, closure.text
    assert api.post(f"/api/v1/ledger/points/{a2}/closures", json={"day": "2026-06-20", "reason": "x"},
                    headers=county.headers["caregiver_a1"]).status_code == 404
    clock.set(local(7, 3, 10))
    june = {"month": "2026-06"}

    def get(path: str, role: str) -> Any:
        return api.get(f"/api/v1/ledger/{path}", params=june, headers=county.headers[role])

    point_missing = get(f"points/{a1}/missing", "caregiver_a1").json()
    assert [(m["kind"], m["period_start"]) for m in point_missing] == [
        ("daily", "2026-06-09"), ("weekly", "2026-06-08"), ("weekly", "2026-06-22"), ("monthly", "2026-06-01")]
    assert point_missing[0]["responsible_role"] == "caregiver"
    village = get(f"villages/{county.village_ids['a2']}/missing", "village_a2").json()
    assert {m["kind"] for m in village} == {"daily", "weekly"}  # the township's patrol is not the village's
    assert sum(1 for m in village if m["kind"] == "daily") == 29 and "2026-06-19" not in {
        m["period_start"] for m in village if m["kind"] == "daily"}
    township = get(f"townships/{county.township_ids['A']}/missing", "officer_a").json()
    assert {(m["point_id"], m["kind"]) for m in township if m["kind"] == "monthly"} == {(a1, "monthly")}
    assert len(township) == len(point_missing) + len(village)
    assert get(f"townships/{county.township_ids['A']}/missing", "viewer").json() == township
    # While June runs, only the days and weeks already over are missing.
    clock.set(local(6, 10, 12))
    running = get(f"points/{a2}/missing", "village_a2").json()
    assert [m["period_start"] for m in running if m["kind"] == "daily"] == [f"2026-06-0{d}" for d in range(1, 10)]
    assert [m["period_start"] for m in running if m["kind"] == "weekly"] == ["2026-06-01"]


@pytest.mark.parametrize(("role", "path_key", "status"), [
    ("officer_b", "township_A", 404),  # another township's ledger: as if it did not exist
    ("officer_b", "village_a1", 404),
    ("village_a1", "village_a2", 404),
    ("village_a1", "township_A", 404),
    ("caregiver_a1", "village_a1", 404),
    ("caregiver_a1", "township_A", 404),
    ("officer_a", "village_a2", 200),
    ("village_a1", "village_a1", 200),
    ("officer_b", "township_B", 200),
    ("viewer", "township_A", 200),
])
def test_place_ledgers_stay_inside_the_scope(api: TestClient, county: County, role: str, path_key: str,
                                              status: int) -> None:
    kind, key = path_key.split("_")
    place_id = county.township_ids[key] if kind == "township" else county.village_ids[key]
    for what in ("missing", "export"):
        resp = api.get(f"/api/v1/ledger/{kind}s/{place_id}/{what}", params={"month": "2026-06"},
                       headers=county.headers[role])
        assert resp.status_code == status, (what, resp.text)
        if status == 404:
            assert county.points["a1"] not in resp.text and county.points["a2"] not in resp.text
    if status == 200:
        bad_month = api.get(f"/api/v1/ledger/{kind}s/{place_id}/missing", params={"month": "2026-6"},
                            headers=county.headers[role])
        assert bad_month.status_code == 422


def test_point_routes_are_guarded(api: TestClient, county: County) -> None:
    a1 = county.points["a1"]
    for path in (f"points/{a1}/inspections", f"points/{a1}/missing"):
        assert api.get(f"/api/v1/ledger/{path}", params={"month": "2026-06"},
                       headers=county.headers["officer_b"]).status_code == 404
        assert api.get(f"/api/v1/ledger/{path}", params={"month": "2026-06"}).status_code == 401
    assert api.get(f"/api/v1/ledger/points/{a1}/evidence", params={"start": "2026-06-01", "end": "2026-06-01"},
                   headers=county.headers["viewer"]).status_code == 422
    assert api.get(f"/api/v1/ledger/points/{a1}/inspections/999999999",
                   headers=county.headers["viewer"]).status_code == 404
