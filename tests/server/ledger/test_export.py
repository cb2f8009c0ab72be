"""The monthly XLSX ledger, downloaded through the API and written by the CLI function, opened back
with openpyxl and checked against the API's own answers and the rows seeded in the database."""

from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook

from server.ledger.export import NO_ALERT_TABLES, XLSX_MEDIA_TYPE, main

from .conftest import TZ, Clock, County, app_client, local, make_county, seed_alert, seed_safety, seed_telemetry
from .test_ledger_api import body, post

pytestmark = pytest.mark.integration

SHEETS = ["概况", "告警记录", "告警时间线", "传感器报警", "巡检记录", "检查项", "问题整改", "留样记录", "漏检",
          "传感器日汇总", "停业日"]
CJK = re.compile(r"[\u4e00-\u9fff]")
INJECTION = '=HYPERLINK("http://example.invalid","点我")'


def rows(book: Workbook, sheet: str) -> list[dict[str, Any]]:
    """Data rows keyed by the English field keys of header row 2."""
    ws = book[sheet]
    keys = [c.value for c in ws[2]]
    return [dict(zip(keys, (c.value for c in row), strict=True)) for row in ws.iter_rows(min_row=3)]


def summary(book: Workbook) -> dict[str, Any]:
    return {r["key"]: r["value"] for r in rows(book, "概况")}


def naive_local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(TZ).replace(tzinfo=None)


@pytest.fixture
def june(api: TestClient, county: County, clock: Clock, tsdb_dsn: str) -> dict[str, Any]:
    """A June at township A: checks, a failed item, a closed day, sensor data, edge alarms and alerts."""
    a1, a2 = county.points["a1"], county.points["a2"]
    made: list[dict[str, Any]] = []
    for d in (1, 2, 3):
        clock.set(local(6, d, 18))
        extra = {"note": INJECTION} if d == 2 else {}
        resp = post(api, county, "caregiver_a1", "a1", body("daily", local(6, d, 17), failed=d == 3, **extra))
        assert resp.status_code == 201, resp.text
        made.append(resp.json())
    clock.set(local(6, 4, 18))
    made.append(post(api, county, "village_a1", "a1", body("weekly", local(6, 4, 15))).json())
    made.append(post(api, county, "officer_a", "a2", body("monthly", local(6, 4, 16))).json())
    assert api.post(f"/api/v1/ledger/points/{a2}/closures", json={"day": "2026-06-19", "reason": "端午节"},
                    headers=county.headers["village_a2"]).status_code == 201
    seed_telemetry(tsdb_dsn, a1, [(local(6, 2, 9 + h), "gas1", "lel", "%LEL", 3.0 + h) for h in range(5)],
                   [(local(6, 2, 12), "elec1", "u", "V", 220.0, 199.0, 233.0)])
    seed_safety(tsdb_dsn, a1, [(local(6, 2, 10), "gas1", "lel", "alarm", "normal", 26.0),
                               (local(6, 2, 10, 30), "gas1", "lel", "normal", "alarm", 2.0)])
    alerts = [seed_alert(tsdb_dsn, a1, local(6, 2, 10), resolved=True),
              seed_alert(tsdb_dsn, a2, local(6, 5, 8), resolved=False)]
    clock.set(local(7, 3, 10))
    return {"inspections": made, "alerts": alerts}


def download(api: TestClient, county: County, role: str, path: str) -> Workbook:
    resp = api.get(f"/api/v1/ledger/{path}/export", params={"month": "2026-06"}, headers=county.headers[role])
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == XLSX_MEDIA_TYPE
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "2026-06.xlsx" in unquote(disposition)
    return load_workbook(io.BytesIO(resp.content))


def test_township_export_holds_the_month(api: TestClient, county: County, june: dict[str, Any]) -> None:
    a1, a2 = county.points["a1"], county.points["a2"]
    township = county.township_ids["A"]
    book = download(api, county, "officer_a", f"townships/{township}")
    assert book.sheetnames == SHEETS
    for name in SHEETS:
        ws = book[name]
        assert all(c.value and CJK.search(str(c.value)) for c in ws[1]), name  # Chinese headers first
        assert all(c.value and not CJK.search(str(c.value)) for c in ws[2]), name  # then the field keys
    missing = api.get(f"/api/v1/ledger/townships/{township}/missing", params={"month": "2026-06"},
                      headers=county.headers["officer_a"]).json()
    head = summary(book)
    assert head["month"] == "2026-06" and head["points"] == 2 and head["timezone"] == "Asia/Shanghai"
    assert (head["inspections_daily"], head["inspections_weekly"], head["inspections_monthly"]) == (3, 1, 1)
    for kind in ("daily", "weekly", "monthly"):
        assert head[f"missing_{kind}"] == sum(1 for m in missing if m["kind"] == kind)
    assert (head["problems"], head["problems_open"], head["problems_overdue"]) == (2, 1, 1)
    assert (head["alerts"], head["alerts_unresolved"], head["sensor_alarms"]) == (2, 1, 1)

    gaps = rows(book, "漏检")
    assert [(g["point_id"], g["period_start"].date().isoformat()) for g in gaps] == [
        (m["point_id"], m["period_start"]) for m in missing]
    assert "2026-06-19" not in {g["period_start"].date().isoformat() for g in gaps if g["point_id"] == a2}

    inspections = rows(book, "巡检记录")
    assert [r["id"] for r in inspections] == [i["id"] for i in june["inspections"]]
    second = next(r for r in inspections if r["id"] == june["inspections"][1]["id"])
    assert second["kind"] == "日检" and second["gas_lel_max"] == 7.0 and second["voltage_min"] == 199.0
    assert second["alarms"] == 1 and second["alerts"] == 1 and second["readings"] == 6
    assert second["inspected_at"] == naive_local(june["inspections"][1]["inspected_at"])
    assert second["note"] == INJECTION  # stored as text, not as a formula
    ws = book["巡检记录"]
    note_col = [c.value for c in ws[2]].index("note") + 1
    note_cell = ws.cell(row=3 + [r["id"] for r in inspections].index(second["id"]), column=note_col)
    assert note_cell.data_type == "s"

    items = rows(book, "检查项")
    assert len(items) == sum(len(i["items"]) for i in june["inspections"])
    assert {r["passed"] for r in items} == {"合格", "不合格"} and {r["area"] for r in items} >= {"燃气", "用电", "食品"}
    problems = rows(book, "问题整改")
    assert [(p["rectification"], p["overdue"]) for p in problems] == [("限期整改", "是"), ("立即整改", "否")]
    samples = rows(book, "留样记录")
    assert len(samples) == 3 and {s["meal"] for s in samples} == {"午餐"}

    alerts = rows(book, "告警记录")
    assert [a["id"] for a in alerts] == june["alerts"]
    assert alerts[0]["state"] == "已解除" and alerts[0]["confirm_note"] == "=阀门已更换"
    assert alerts[0]["hazard"] == "燃气" and alerts[0]["peak_severity"] == "报警" and alerts[1]["state"] == "已确认"
    timeline = rows(book, "告警时间线")
    first = [t for t in timeline if t["alert_id"] == june["alerts"][0]]
    assert [t["kind"] for t in first] == ["报警产生", "通知（notify）", "通知（notify）", "确认", "现场确认", "解除"]
    assert [t["ok"] for t in first if t["kind"].startswith("通知")] == ["否", "是"]
    assert len([t for t in timeline if t["alert_id"] == june["alerts"][1]]) == 4

    alarms = rows(book, "传感器报警")
    assert len(alarms) == 1 and alarms[0]["minutes"] == 30.0 and alarms[0]["peak_level"] == "一级报警"
    daily = rows(book, "传感器日汇总")
    assert [(d["point_id"], d["day"].date().isoformat(), d["gas_lel_max"]) for d in daily] == [
        (a1, "2026-06-02", 7.0)]
    assert [(c["point_id"], c["reason"]) for c in rows(book, "停业日")] == [(a2, "端午节")]


def test_village_export_shows_its_own_points_only(api: TestClient, county: County, june: dict[str, Any]) -> None:
    book = download(api, county, "village_a1", f"villages/{county.village_ids['a1']}")
    cells = {str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row if c.value is not None}
    assert county.points["a1"] in cells and not any(county.points["a2"] in c for c in cells)
    head = summary(book)
    assert "missing_monthly" not in head  # the township's patrol is not on a village's ledger
    assert head["alerts"] == 1 and head["inspections_monthly"] == 0


def test_export_without_alert_tables(private_dsn: str, clock: Clock) -> None:
    with psycopg.connect(private_dsn) as conn:
        conn.execute("DROP TABLE alert_commands, alert_notifications, alert_events, alerts CASCADE")
    county = make_county(private_dsn)
    with app_client(private_dsn, clock) as api:
        out = post(api, county, "caregiver_a1", "a1", body("daily", local(7, 3, 9)))
        assert out.status_code == 201, out.text
        assert out.json()["evidence"]["alerts"] is None  # unknown, not zero
        detail = api.get(f"/api/v1/ledger/points/{county.points['a1']}/evidence",
                         params={"start": "2026-07-01", "end": "2026-07-04"}, headers=county.headers["viewer"])
        assert detail.status_code == 200 and detail.json()["alerts"] is None
        resp = api.get(f"/api/v1/ledger/villages/{county.village_ids['a1']}/export", params={"month": "2026-07"},
                       headers=county.headers["viewer"])
    assert resp.status_code == 200, resp.text
    book = load_workbook(io.BytesIO(resp.content))
    assert summary(book)["alerts"] == NO_ALERT_TABLES
    assert book["告警记录"].cell(row=3, column=1).value == NO_ALERT_TABLES
    assert rows(book, "巡检记录")[0]["alerts"] is None


def test_cli_writes_the_same_ledger(api: TestClient, county: County, june: dict[str, Any], tsdb_dsn: str,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ledger.xlsx"
    township = str(county.township_ids["A"])
    assert main(["--township", township, "--month", "2026-06", "--out", str(out), "--dsn", tsdb_dsn]) == 0
    book = load_workbook(out)
    assert book.sheetnames == SHEETS
    assert [r["id"] for r in rows(book, "巡检记录")] == [i["id"] for i in june["inspections"]]
    assert len(rows(book, "告警记录")) == 2
    assert main(["--township", township, "--month", "2026-13", "--out", str(out), "--dsn", tsdb_dsn]) == 2
    assert main(["--village", "999999999", "--month", "2026-06", "--out", str(tmp_path / "x.xlsx"),
                 "--dsn", tsdb_dsn]) == 2
    assert "no village" in capsys.readouterr().err
    assert not (tmp_path / "x.xlsx").exists()
