"""The registry workbook through the CLI on the real database: validation report, dry run, idempotent
re-import, export round trip."""

from __future__ import annotations

import io
import random
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from openpyxl import Workbook

from server.subsidy import importer
from server.subsidy.cli import main
from server.subsidy.importer import parse_date
from server.subsidy.records import PointPlace

from ..conftest import query
from .conftest import id_number
from .dbdata import insert_points

pytestmark = pytest.mark.integration


def workbook(elders: list[list[Any]], categories: list[list[Any]], cards: list[list[Any]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "老人"
    ws.append(list(importer.ELDER_COLUMNS))
    for r in elders:
        ws.append(r)
    cs = wb.create_sheet("人群类别")
    cs.append(list(importer.CATEGORY_COLUMNS))
    for r in categories:
        cs.append(r)
    ks = wb.create_sheet("助餐卡")
    ks.append(list(importer.CARD_COLUMNS))
    for r in cards:
        ks.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@pytest.fixture
def place(tsdb_dsn: str) -> tuple[str, str, str, str]:
    """(tag, township, village, point id) of a fresh place."""
    tag = uuid.uuid4().hex[:6].upper()
    with psycopg.connect(tsdb_dsn) as conn:
        insert_points(conn, [PointPlace(f"p{tag}", "", "", "助餐点", "青溪村", "千岛湖镇")], tag)
        conn.commit()
    return tag, f"千岛湖镇{tag}", f"青溪村{tag}", f"p{tag}"


def run(dsn: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--dsn", dsn, *args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_dates_in_the_bureau_spellings() -> None:
    assert parse_date("2024-06-01") == parse_date("2024/6/1") == parse_date("2024年6月1日") == date(2024, 6, 1)
    assert parse_date(" ") is None
    for bad in ("2024-13-01", "June 1", "2024-02-30"):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_a_bad_file_is_reported_row_by_row_and_nothing_is_written(tmp_path: Path, tsdb_dsn: str,
                                                                   place: tuple[str, str, str, str]) -> None:
    tag, township, village, point = place
    region = f"33{random.Random(tag).randint(1000, 9999)}"
    good = id_number(date(1950, 3, 1), 1, region)
    bad_check = good[:17] + ("0" if good[17] != "0" else "1")
    data = workbook(
        [[f"B{tag}1", "张三明", good, "13812341234", "", township, village, "本地", None, "在册", None, point],
         ["", "李四", bad_check, "", "", township, village, "本地", None, "", None, None],
         ["", "王五", good, "", "", township, village, "本地", None, "", None, None],
         ["", "赵六", id_number(date(1951, 1, 1), 2, region), "", "", township, "无此村", "本地", None, "", None, None],
         ["", "钱七", id_number(date(1952, 1, 1), 3, region), "", "", township, village, "外地", "2020-13-01", "已故",
          None, "nowhere"]],
        [[good, "低保", "民政证明001", "2024-01-01", None], [good, "富豪", "x", "2024-01-01", None]],
        [[good, "EM:00AB12CD34", "", "2024-05-01", "正常", None], [good, "12345", "", None, None, None]],
    )
    path = tmp_path / "registry.xlsx"
    path.write_bytes(data)
    report_csv = tmp_path / "report.csv"
    code, out, err = run(tsdb_dsn, "import-elders", str(path), "--report", str(report_csv))
    assert code == 1
    expected = {("老人", 3, "身份证号"), ("老人", 4, "身份证号"), ("老人", 5, "村/社区"),
                ("老人", 6, "居住起始日期"), ("老人", 6, "状态日期"), ("老人", 6, "常去助餐点"),
                ("人群类别", 3, "人群类别"), ("助餐卡", 3, "卡号格式")}
    rows = report_csv.read_text(encoding="utf-8-sig").splitlines()[1:]
    found = {(r.split(",")[0], int(r.split(",")[1]), r.split(",")[2]) for r in rows}
    assert found == expected, rows
    assert "bad check character" in out and "unknown village" in out and "same number as row 2" in out
    assert "nothing written" in out and "rows" in err  # the progress bar
    assert query(tsdb_dsn, "SELECT count(*) FROM elders WHERE id_number LIKE %s", region + "%") == [(0,)]


def test_dry_run_then_import_then_reimport_and_export_round_trip(tmp_path: Path, tsdb_dsn: str,
                                                                 place: tuple[str, str, str, str]) -> None:
    tag, township, village, point = place
    region = f"33{random.Random(tag + 'x').randint(1000, 9999)}"
    a, b, c = (id_number(date(1945 + i, 5, 20), i + 1, region) for i in range(3))
    data = workbook(
        [[f"B{tag}1", "张三明", a, "13812341234", "某村3组", township, village, "本地", None, "在册", None, point],
         ["", "李四", b, "", "", township, village, "外地", date(2019, 3, 1), "", None, None],
         ["", "王五芳", c, "", "", township, village, "本地", None, "已故", "2024-06-10", None]],
        [[a, "低保", "民政证明001", "2024-01-01", None], [b, "dibao_edge", "证明002", date(2023, 1, 1), "2024-12-31"]],
        [[a, f"EM:{tag}AB12", "", "2024-05-01", "正常", None], [b, "3283263748", "uid_dec", "2024-05-02", "挂失",
                                                                "2024-06-03"]],
    )
    path = tmp_path / "registry.xlsx"
    path.write_bytes(data)
    code, out, _ = run(tsdb_dsn, "import-elders", str(path), "--dry-run", "--no-progress")
    assert code == 0, out
    assert "老人: 3 rows, 3 added" in out and "dry run, nothing written" in out
    assert query(tsdb_dsn, "SELECT count(*) FROM elders WHERE id_number = ANY(%s)", [a, b, c]) == [(0,)]

    code, out, _ = run(tsdb_dsn, "import-elders", str(path), "--no-progress")
    assert code == 0, out
    assert "老人: 3 rows, 3 added" in out and "人群类别: 2 rows, 2 added" in out and "助餐卡: 2 rows, 2 added" in out
    rows = query(tsdb_dsn, "SELECT e.id, e.name, e.hukou_local, e.resident_since, e.status, e.status_date,"
                           " v.name FROM elders e JOIN villages v ON v.id = e.village_id"
                           " WHERE id_number = ANY(%s) ORDER BY id_number", [a, b, c])
    assert rows[0][:3] == (f"B{tag}1", "张三明", True) and rows[0][6] == village
    assert rows[1][2:4] == (False, date(2019, 3, 1))
    assert rows[2][4:6] == ("deceased", date(2024, 6, 10))
    cards = query(tsdb_dsn, "SELECT c.card_id, c.state FROM cards c JOIN elders e ON e.id = c.elder_id"
                            " WHERE e.id_number = ANY(%s) ORDER BY e.id_number", [a, b])
    assert cards == [(f"EM:{tag}AB12", "active"), ("UID:C3B2A104", "lost")]

    code, out, _ = run(tsdb_dsn, "import-elders", str(path), "--no-progress")
    assert code == 0
    assert "老人: 3 rows, 0 added, 0 updated, 3 unchanged" in out
    assert "人群类别: 2 rows, 0 added, 0 updated, 2 unchanged" in out and "助餐卡: 2 rows, 0 added, 0 updated" in out

    exported = tmp_path / "export.xlsx"
    assert run(tsdb_dsn, "export-elders", str(exported))[0] == 0
    code, out, _ = run(tsdb_dsn, "import-elders", str(exported), "--dry-run", "--no-progress")
    assert code == 0, out
    assert " 0 added, 0 updated" in out.splitlines()[0] and "problems" in out

    # Ending a category is the one in-place change an import makes.
    ended = workbook([], [[a, "低保", "民政证明001", "2024-01-01", "2024-06-30"]], [])
    path.write_bytes(ended)
    code, out, _ = run(tsdb_dsn, "import-elders", str(path), "--no-progress")
    assert code == 0 and "人群类别: 1 rows, 0 added, 1 updated" in out
    assert query(tsdb_dsn, "SELECT valid_to FROM elder_categories g JOIN elders e ON e.id = g.elder_id"
                           " WHERE e.id_number = %s", a) == [(date(2024, 6, 30),)]
