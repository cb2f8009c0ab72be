"""The subsidy API end to end on the real database: policies, runs, scope, sign-off lock, reopen, corrections,
exports, statistics and notices. Each test module uses months no other test writes taps into."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pydantic import SecretStr

from server.app import create_app
from server.settings import DbSettings, Settings
from server.subsidy.policy import parse_policies
from server.subsidy.records import CardBinding, Month, Tap
from server.subsidy.repository import ID_CARD_BOUND_FROM
from server.subsidy.settlement import Level, settle

from ..conftest import bearer_headers, query
from .conftest import POLICY_YAML, TZ
from .dbcounty import DbCounty, build, commit
from .dbdata import insert_taps

pytestmark = pytest.mark.integration

MARCH = Month(2031, 3)
APRIL = Month(2031, 4)


@pytest.fixture(scope="module")
def county(tsdb_dsn: str) -> DbCounty:
    return commit(tsdb_dsn, build(MARCH))


@pytest.fixture(scope="module")
def app_client(tsdb_dsn: str) -> Iterator[TestClient]:
    app = create_app(Settings(db=DbSettings(dsn=SecretStr(tsdb_dsn), pool_min=1, pool_max=4)))
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def admin(tsdb_dsn: str) -> dict[str, str]:
    return bearer_headers(tsdb_dsn, role="bureau_admin")


def _expected(county: DbCounty) -> Any:
    book = parse_policies(POLICY_YAML)
    id_cards = [CardBinding("ID:" + e.id_number, e.elder_id, ID_CARD_BOUND_FROM) for e in county.elders]
    return settle(county.month, taps=county.taps, bindings=county.bindings + id_cards, elders=county.elders,
                  points=county.points, policies=book)


def test_policies_are_added_once_and_immutable(app_client: TestClient, admin: dict[str, str], tsdb_dsn: str) -> None:
    resp = app_client.post("/api/v1/subsidy/policies", json={"yaml": POLICY_YAML}, headers=admin)
    assert resp.status_code == 201, resp.text
    assert {r["status"] for r in resp.json()} <= {"added", "unchanged"}
    again = app_client.post("/api/v1/subsidy/policies", json={"yaml": POLICY_YAML}, headers=admin)
    assert [r["status"] for r in again.json()] == ["unchanged", "unchanged"]
    changed = POLICY_YAML.replace('general: {lunch: "3.00"}', 'general: {lunch: "3.50"}')
    assert app_client.post("/api/v1/subsidy/policies", json={"yaml": changed}, headers=admin).status_code == 422
    viewer = bearer_headers(tsdb_dsn, role="bureau_viewer")
    assert app_client.post("/api/v1/subsidy/policies", json={"yaml": POLICY_YAML}, headers=viewer).status_code == 403
    listed = app_client.get("/api/v1/subsidy/policies", headers=viewer).json()
    assert [p["version"] for p in listed][:2] == ["v1", "v2"]
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation), psycopg.connect(tsdb_dsn) as conn:
        conn.execute("UPDATE subsidy_policies SET county = 'x' WHERE version = 'v1'")


def test_month_settles_signs_locks_reopens_and_carries_corrections(
        app_client: TestClient, admin: dict[str, str], county: DbCounty, tsdb_dsn: str) -> None:
    app_client.post("/api/v1/subsidy/policies", json={"yaml": POLICY_YAML}, headers=admin)
    expected = _expected(county)
    run = app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/runs", headers=admin)
    assert run.status_code == 201, run.text
    body = run.json()
    assert Decimal(body["amount"]) == expected.county.amount
    assert body["taps"] == len(county.taps) and body["meals"] == expected.county.meals
    sql_run = app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/runs?method=sql", headers=admin).json()
    assert Decimal(sql_run["amount"]) == expected.county.amount and sql_run["excluded"] == body["excluded"]

    totals = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/totals?run_id={body['id']}", headers=admin).json()
    by_unit = {(t["level"], t["unit_id"]): t for t in totals}
    for t in expected.totals:
        if t.level is Level.POINT:
            got = by_unit[("point", t.unit_id)]
            assert Decimal(got["amount"]) == t.amount and got["meals"] == t.meals and got["taps"] == t.taps
    sql_totals = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/totals?run_id={sql_run['id']}",
                                headers=admin).json()
    assert sql_totals == totals

    # Sign-off locks the month: no new run, the snapshot and the signed rows never change.
    signed = app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/sign", json={"run_id": body["id"]}, headers=admin)
    assert signed.status_code == 200, signed.text
    digest = signed.json()["content_hash"]
    assert digest == body["content_hash"]
    assert app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/runs", headers=admin).status_code == 409
    assert app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/sign", json={"run_id": body["id"]},
                           headers=admin).status_code == 409
    with psycopg.connect(tsdb_dsn) as conn:
        row = conn.execute("SELECT encode(sha256(convert_to(content, 'UTF8')), 'hex') FROM settlement_snapshots"
                           " WHERE month = %s", (MARCH.first_day,)).fetchone()
        assert row is not None and row[0] == digest
    for statement in ("UPDATE settlement_snapshots SET signed_by = 'x' WHERE month = %s",
                      "DELETE FROM settlement_snapshots WHERE month = %s",
                      "UPDATE settlement_lines SET amount = 0 WHERE run_id IN"
                      " (SELECT run_id FROM settlement_snapshots WHERE month = %s)"):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation), psycopg.connect(tsdb_dsn) as conn:
            conn.execute(statement, (MARCH.first_day,))
    with pytest.raises(psycopg.errors.CheckViolation), psycopg.connect(tsdb_dsn) as conn:
        conn.execute("INSERT INTO settlement_snapshots (month, revision, run_id, content, content_hash, signed_by,"
                     " signed_at) VALUES (%s, 99, %s, '{}', %s, 'x', now())", (MARCH.first_day, body["id"], digest))

    # A tap that arrives late for March becomes an April adjustment, not a change to March.
    late_elder = county.elders[0]
    late_day = date(2031, 3, 25)
    with psycopg.connect(tsdb_dsn) as conn:
        insert_taps(conn, [Tap(county.point(1), "late", 1, datetime.combine(late_day, time(11, 5), TZ),
                               county.bindings[0].card_id)])
        conn.commit()
    corr = app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/corrections", headers=admin)
    assert corr.status_code == 200, corr.text
    assert corr.json() == {"origin": "2031-03", "into": "2031-04", "lines": 1, "delta": "4.00"}
    assert late_elder.elder_id == query(tsdb_dsn, "SELECT elder_id FROM settlement_adjustments WHERE origin_month"
                                        " = %s", MARCH.first_day)[0][0]
    april = app_client.post(f"/api/v1/subsidy/settlements/{APRIL}/runs", headers=admin).json()
    assert Decimal(april["adjustments"]) == Decimal("4.00") and Decimal(april["amount"]) == 0

    # Reopening needs a reason; it leaves a settlement event and an audit entry.
    short = app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/reopen", json={"reason": "x"}, headers=admin)
    assert short.status_code == 422
    reason = "村委会反映3月25日漏记一餐"
    reopened = app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/reopen", json={"reason": reason}, headers=admin)
    assert reopened.status_code == 200, reopened.text
    month = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}", headers=admin).json()
    assert month["state"] == "reopened"
    assert [(e["action"], e["reason"]) for e in month["events"]] == [("sign", ""), ("reopen", reason)]
    audit = query(tsdb_dsn, "SELECT action, detail->>'reason' FROM audit_log WHERE target = %s ORDER BY id",
                  f"month:{MARCH}")
    assert ("subsidy.sign", None) in audit and ("subsidy.reopen", reason) in audit
    assert app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/runs", headers=admin).status_code == 201


def test_a_township_officer_sees_only_its_township(app_client: TestClient, admin: dict[str, str],
                                                   county: DbCounty, tsdb_dsn: str) -> None:
    app_client.post("/api/v1/subsidy/policies", json={"yaml": POLICY_YAML}, headers=admin)
    if query(tsdb_dsn, "SELECT state FROM settlement_months WHERE month = %s", MARCH.first_day) != [("signed",)]:
        app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/runs", headers=admin)
    wenchang = county.township_ids[f"文昌镇{county.tag}"]
    officer = bearer_headers(tsdb_dsn, role="township_officer", township_id=wenchang)
    totals = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/totals", headers=officer).json()
    assert totals and {t["level"] for t in totals} <= {"township", "village", "point"}
    assert {t["unit_id"] for t in totals if t["level"] == "point"} == {county.point(4)}
    lines = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/lines", headers=officer).json()
    assert lines and {ln["point_id"] for ln in lines} == {county.point(4)}
    assert app_client.get(f"/api/v1/subsidy/settlements/{MARCH}", headers=officer).status_code == 403
    wb = load_workbook(io.BytesIO(app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/export.xlsx",
                                                 headers=officer).content))
    assert wb.sheetnames == ["汇总", f"文昌镇{county.tag}"]


def test_exports_add_up_and_mask_by_role(app_client: TestClient, admin: dict[str, str], county: DbCounty,
                                         tsdb_dsn: str) -> None:
    app_client.post("/api/v1/subsidy/policies", json={"yaml": POLICY_YAML}, headers=admin)
    if query(tsdb_dsn, "SELECT state FROM settlement_months WHERE month = %s", MARCH.first_day) != [("signed",)]:
        app_client.post(f"/api/v1/subsidy/settlements/{MARCH}/runs", headers=admin)
    api_totals = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/totals", headers=admin).json()
    ours_due = sum((Decimal(t["amount"]) for t in api_totals
                    if t["level"] == "township" and t["name"].endswith(county.tag)), Decimal("0"))
    assert ours_due >= _expected(county).county.amount > 0
    resp = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/export.xlsx", headers=admin)
    assert resp.status_code == 200
    wb = load_workbook(io.BytesIO(resp.content))
    ours = [n for n in wb.sheetnames if n.endswith(county.tag)]
    assert sorted(ours) == sorted({f"千岛湖镇{county.tag}", f"文昌镇{county.tag}"})
    total = Decimal("0")
    for name in ours:
        ws = wb[name]
        rows = list(ws.iter_rows(values_only=True))
        last = rows[-1]
        assert last[0] == "合计"
        township_due = Decimal(str(rows[2][4]))
        assert Decimal(str(last[8])) == township_due
        total += township_due
    assert total == ours_due

    text = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/export.csv", headers=admin).content.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    ours_lines = [r for r in rows[1:] if len(r) == 9 and r[3].startswith(f"E{county.tag}")]
    assert sum(Decimal(r[8]) for r in ours_lines) == ours_due
    assert any(len(r[5]) == 18 and "*" not in r[5] for r in ours_lines)  # the bureau admin sees ID numbers
    viewer = bearer_headers(tsdb_dsn, role="bureau_viewer")
    masked = app_client.get(f"/api/v1/subsidy/settlements/{MARCH}/export.csv", headers=viewer).content.decode()
    for r in csv.reader(io.StringIO(masked.lstrip("\ufeff"))):
        if len(r) == 9 and r[3].startswith(f"E{county.tag}"):
            assert "*" in r[5] and r[6] == "***"


def test_statistics(app_client: TestClient, admin: dict[str, str], county: DbCounty, tsdb_dsn: str) -> None:
    daily = app_client.get(f"/api/v1/subsidy/stats/daily?month={MARCH}", headers=admin).json()
    ours = [d for d in daily if d["point_id"].startswith(f"p{county.tag}")]
    assert sum(d["taps"] for d in ours) >= len(county.taps)
    points = app_client.get(f"/api/v1/subsidy/stats/points?month={MARCH}", headers=admin).json()
    mine = {p["point_id"]: p for p in points if p["point_id"].startswith(f"p{county.tag}")}
    # Meals served: one per (elder or card, day, meal label) at a point, repeats not counted.
    served = query(tsdb_dsn, "SELECT count(DISTINCT (point_id, (time AT TIME ZONE 'Asia/Shanghai')::date, card_id))"
                   " FROM diner_events WHERE point_id LIKE %s AND time >= '2031-03-01' AND time < '2031-03-31'",
                   f"p{county.tag}-%")[0][0]
    assert sum(p["meals_served"] for p in mine.values()) == served > 100
    assert all(p["serving_days"] >= 1 for p in mine.values())
    first = app_client.get(f"/api/v1/subsidy/stats/first-time?month={MARCH}", headers=admin).json()
    assert {f["elder_id"] for f in first if f["elder_id"].startswith(f"E{county.tag}")} == {
        e.elder_id for e in county.elders}
    again = app_client.get(f"/api/v1/subsidy/stats/first-time?month={APRIL}", headers=admin).json()
    assert not any(f["elder_id"].startswith(f"E{county.tag}") for f in again)
    lapsed = app_client.get("/api/v1/subsidy/stats/lapsed?as_of=2031-04-10&quiet_days=14&min_meals=5",
                            headers=admin).json()
    assert {r["elder_id"] for r in lapsed if r["elder_id"].startswith(f"E{county.tag}")} == {
        e.elder_id for e in county.elders}
    recent = app_client.get("/api/v1/subsidy/stats/lapsed?as_of=2031-03-20&quiet_days=5&min_meals=3",
                            headers=admin).json()
    assert not any(r["elder_id"].startswith(f"E{county.tag}") for r in recent)


def test_notices_services_and_donations(app_client: TestClient, admin: dict[str, str], county: DbCounty,
                                        tsdb_dsn: str) -> None:
    app_client.post("/api/v1/subsidy/policies", json={"yaml": POLICY_YAML}, headers=admin)
    village = county.village_ids[f"青溪村{county.tag}"]
    elder = county.elders[0]
    officer = bearer_headers(tsdb_dsn, role="village_officer", village_id=village)
    rec = app_client.post("/api/v1/subsidy/services", headers=officer,
                          json={"day": "2031-03-05", "elder_id": elder.elder_id, "service": "cleaning"})
    assert rec.status_code == 201, rec.text
    other = county.village_ids[f"文昌社区{county.tag}"]
    outsider = bearer_headers(tsdb_dsn, role="village_officer", village_id=other)
    assert app_client.post("/api/v1/subsidy/services", headers=outsider,
                           json={"day": "2031-03-05", "elder_id": elder.elder_id, "service": "medical"}
                           ).status_code == 404
    gift = app_client.post("/api/v1/subsidy/donations", headers=officer,
                           json={"donor": "王大伟", "donor_kind": "person", "kind": "money", "day": "2031-03-08",
                                 "village_id": village, "amount": "500.00"})
    assert gift.status_code == 201, gift.text
    assert app_client.post("/api/v1/subsidy/donations", headers=officer,
                           json={"donor": "某超市", "donor_kind": "organisation", "kind": "goods",
                                 "day": "2031-03-08", "village_id": village}).status_code == 422

    drafted = app_client.post(f"/api/v1/subsidy/notices/{MARCH}/draft", headers=admin)
    assert drafted.status_code == 200, drafted.text
    assert village in drafted.json()["drafted"]
    html = app_client.get(f"/api/v1/subsidy/notices/{MARCH}/{village}.html", headers=officer).text
    assert "王*伟" in html and "王大伟" not in html and elder.id_number not in html and "13812341234" not in html
    assert elder.id_number[:2] + "*" * 13 + elder.id_number[-3:] in html
    assert "张*明" in html and "低保" not in html
    pdf = app_client.get(f"/api/v1/subsidy/notices/{MARCH}/{village}.pdf", headers=officer)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-") and b"STSong-Light" in pdf.content
    assert app_client.get(f"/api/v1/subsidy/notices/{MARCH}/{other}.html", headers=officer).status_code == 404
    listed = {n["village_id"]: n for n in app_client.get(f"/api/v1/subsidy/notices/{MARCH}", headers=officer).json()}
    assert set(listed) == {village} and listed[village]["status"] == "pending"
    pub = app_client.post(f"/api/v1/subsidy/notices/{MARCH}/{village}/publish", headers=officer, json={})
    assert pub.status_code == 200, pub.text
    assert app_client.post(f"/api/v1/subsidy/notices/{MARCH}/{village}/publish", headers=officer,
                           json={}).status_code == 409
    listed = {n["village_id"]: n for n in app_client.get(f"/api/v1/subsidy/notices/{MARCH}", headers=admin).json()}
    assert listed[village]["status"] == "published"
    assert listed[other]["status"] == "pending" and listed[other]["due_on"] == "2031-04-10"
