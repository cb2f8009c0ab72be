"""The registry workbook through the HTTP API: dry run with a row-by-row report, import, export, roles."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from server.app import create_app
from server.settings import DbSettings, Settings

from ..conftest import bearer_headers, query
from .conftest import id_number
from .test_importer import place, workbook  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.integration

XLSX = {"Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def app_for(dsn: str) -> Any:
    from pydantic import SecretStr

    return create_app(Settings(db=DbSettings(dsn=SecretStr(dsn), pool_min=1, pool_max=4)))


def test_dry_run_reports_rows_then_import_writes_and_export_reads_back(
        tsdb_dsn: str, place: tuple[str, str, str, str]) -> None:  # noqa: F811
    tag, township, village, point = place
    region = f"33{random.Random(tag + 'api').randint(1000, 9999)}"
    a, b = (id_number(date(1946 + i, 4, 2), i + 1, region) for i in range(2))
    good = workbook([[f"A{tag}1", "张三明", a, "13812341234", "", township, village, "本地", None, "在册", None, point],
                     ["", "李四", b, "", "", township, village, "本地", None, "", None, None]],
                    [[a, "低保", "民政证明001", "2024-01-01", None]],
                    [[a, f"EM:{tag}CD34", "", "2024-05-01", "正常", None]])
    bad = workbook([["", "王五", b[:17] + ("0" if b[17] != "0" else "1"), "", "", township, village, "本地", None, "",
                     None, None]], [], [])
    admin = {**bearer_headers(tsdb_dsn, "bureau_admin"), **XLSX}
    with TestClient(app_for(tsdb_dsn)) as api:
        report = api.post("/api/v1/registry/import", content=bad, headers=admin).json()
        assert report["ok"] is False and report["written"] is False
        assert [(p["sheet"], p["row"], p["column"]) for p in report["problems"]] == [("老人", 2, "身份证号")]

        dry = api.post("/api/v1/registry/import", content=good, headers=admin).json()
        assert dry["dry_run"] is True and dry["ok"] is True and dry["added"]["老人"] == 2
        assert query(tsdb_dsn, "SELECT count(*) FROM elders WHERE id_number = ANY(%s)", [a, b]) == [(0,)]

        done = api.post("/api/v1/registry/import", params={"dry_run": "false"}, content=good, headers=admin).json()
        assert done["written"] is True and done["added"] == {"老人": 2, "人群类别": 1, "助餐卡": 1}
        assert query(tsdb_dsn, "SELECT count(*) FROM elders WHERE id_number = ANY(%s)", [a, b]) == [(2,)]
        assert query(tsdb_dsn, "SELECT count(*) FROM audit_log WHERE action = 'registry.import'")[0][0] >= 1

        again = api.post("/api/v1/registry/import", params={"dry_run": "false"}, content=good, headers=admin).json()
        assert again["added"] == {} and again["unchanged"]["老人"] == 2  # idempotent

        exported = api.get("/api/v1/registry/export", headers=admin)
        assert exported.status_code == 200
        import io

        sheet = load_workbook(io.BytesIO(exported.content))["老人"]
        assert a in {str(c.value) for c in sheet["C"]}

        assert api.post("/api/v1/registry/import", content=b"not a workbook", headers=admin).status_code == 422
        viewer = {**bearer_headers(tsdb_dsn, "bureau_viewer"), **XLSX}
        assert api.post("/api/v1/registry/import", content=good, headers=viewer).status_code == 403
        assert api.get("/api/v1/registry/export", headers=viewer).status_code == 403
