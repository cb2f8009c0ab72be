"""Settlement exports: XLSX with a summary sheet and a sheet per township (totals and per-elder lines), and CSV.

Per-elder lines are the subsidised meals of a run summed per (township, village, point, elder,
category); the ID number is shown as the reader's role may see it (server.auth.scopes.Masker).
Money is written as exact decimals (number format 0.00), never through floats in the CSV.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from psycopg import sql

from server.auth.scopes import Masker, Scope, Sensitive
from server.subsidy.policy import CATEGORY_LABELS_ZH, Category
from server.subsidy.records import EXCLUSION_LABELS_ZH, ExclusionReason

ZERO = Decimal("0.00")
LEVEL_ZH = {"county": "全县", "township": "乡镇", "village": "村/社区", "point": "助餐点"}
TOTAL_HEADERS = ["层级", "编号", "名称", "补贴餐次", "补贴金额(元)", "调整(元)", "应付(元)", "刷卡总数", "剔除刷卡"]
LINE_HEADERS = ["乡镇", "村/社区", "助餐点", "老人编号", "姓名", "身份证号", "人群类别", "补贴餐次", "补贴金额(元)"]


@dataclass(frozen=True, slots=True)
class TotalRow:
    level: str
    unit_id: str
    name: str
    township_id: int | None
    meals: int
    amount: Decimal
    adjustments: Decimal
    taps: int
    excluded: dict[str, int]

    @property
    def due(self) -> Decimal:
        return self.amount + self.adjustments


@dataclass(frozen=True, slots=True)
class ElderLine:
    township_id: int | None
    township: str
    village: str
    point: str
    elder_id: str
    name: str
    id_number: str
    category: str
    meals: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ExportData:
    month: str
    county: str
    run_id: int
    totals: list[TotalRow]
    lines: list[ElderLine]


def totals_filter(scope: Scope) -> tuple[sql.Composable, tuple[Any, ...]]:
    """Which total rows a scope may see: the county row only county-wide, others by township/village/point."""
    if scope.county:
        return sql.SQL("TRUE"), ()
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if scope.township_ids:
        parts.append(sql.SQL("(level <> 'county' AND township_id = ANY(%s))"))
        params.append(sorted(scope.township_ids))
    if scope.village_ids:
        parts.append(sql.SQL("(level IN ('village', 'point') AND village_id = ANY(%s))"))
        params.append(sorted(scope.village_ids))
    if scope.point_ids:
        parts.append(sql.SQL("(level = 'point' AND unit_id = ANY(%s))"))
        params.append(sorted(scope.point_ids))
    if not parts:
        return sql.SQL("FALSE"), ()
    return sql.SQL("(") + sql.SQL(" OR ").join(parts) + sql.SQL(")"), tuple(params)


def load(conn: psycopg.Connection[Any], run_id: int, month: str, county: str, scope: Scope,
         masker: Masker) -> ExportData:
    """Totals and per-elder lines of a run, restricted to what the scope may see."""
    where, params = totals_filter(scope)
    totals = [
        TotalRow(r[0], r[1], r[2], r[3], int(r[4]), r[5], r[6], int(r[7]), dict(r[8]))
        for r in conn.execute(
            sql.SQL("SELECT level, unit_id, name, township_id, meals, amount, adjustments, taps, excluded"
                    " FROM settlement_totals WHERE run_id = %s AND {} ORDER BY CASE level WHEN 'county' THEN 0"
                    " WHEN 'township' THEN 1 WHEN 'village' THEN 2 ELSE 3 END, township_id, village_id, unit_id")
            .format(where),
            (run_id, *params),
        )
    ]
    point_where = scope.sql_filter("l.point_id")
    lines = [
        ElderLine(r[0], r[1] or "", r[2] or "", r[3], r[4], r[5], masker.value(Sensitive.ID_NUMBER, r[6]),
                  masker.value(Sensitive.CATEGORY, r[7]), int(r[8]), r[9])
        for r in conn.execute(
            sql.SQL(
                "SELECT l.township_id, t.name, v.name, coalesce(p.name, l.point_id), l.elder_id, e.name, e.id_number,"
                " l.category, count(*), sum(l.amount)"
                " FROM settlement_lines l JOIN elders e ON e.id = l.elder_id"
                " LEFT JOIN townships t ON t.id = l.township_id LEFT JOIN villages v ON v.id = l.village_id"
                " LEFT JOIN meal_points p ON p.id = l.point_id"
                " WHERE l.run_id = %s AND {} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 2, 3, 4, 5, 8"
            ).format(point_where.sql),
            (run_id, *point_where.params),
        )
    ]
    return ExportData(month, county, run_id, totals, lines)


def _category_label(value: str) -> str:
    try:
        return CATEGORY_LABELS_ZH[Category(value)]
    except ValueError:
        return value  # already masked for this reader


def _excluded_text(excluded: dict[str, int]) -> str:
    parts = []
    for reason, n in sorted(excluded.items()):
        try:
            label = EXCLUSION_LABELS_ZH[ExclusionReason(reason)]
        except ValueError:
            label = reason
        parts.append(f"{label}{n}")
    return "；".join(parts)


def _total_cells(t: TotalRow) -> list[Any]:
    return [LEVEL_ZH.get(t.level, t.level), t.unit_id, t.name, t.meals, t.amount, t.adjustments, t.due, t.taps,
            _excluded_text(t.excluded)]


def _line_cells(ln: ElderLine) -> list[Any]:
    return [ln.township, ln.village, ln.point, ln.elder_id, ln.name, ln.id_number, _category_label(ln.category),
            ln.meals, ln.amount]


def _sheet_title(name: str, used: set[str]) -> str:
    title = "".join(c for c in name if c not in "[]:*?/\\")[:28] or "乡镇"
    base, n = title, 2
    while title in used:
        title = f"{base}{n}"
        n += 1
    used.add(title)
    return title


def to_xlsx(data: ExportData) -> bytes:
    """The workbook: 汇总 (every total the reader may see), then one sheet per township."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "汇总"
    ws.append([f"{data.county} {data.month} 老年助餐补贴结算（结算批次 {data.run_id}）"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(TOTAL_HEADERS)
    for t in data.totals:
        ws.append(_total_cells(t))
    money_columns(ws, (5, 6, 7), start_row=3)
    used = {"汇总"}
    lines_by_township: dict[int | None, list[ElderLine]] = defaultdict(list)
    for ln in data.lines:
        lines_by_township[ln.township_id].append(ln)
    for t in (t for t in data.totals if t.level == "township"):
        sheet = wb.create_sheet(_sheet_title(t.name, used))
        sheet.append([f"{t.name} {data.month} 补贴结算"])
        sheet["A1"].font = Font(bold=True, size=13)
        sheet.append(TOTAL_HEADERS)
        sheet.append(_total_cells(t))
        tid = int(t.unit_id)
        for sub in data.totals:
            if sub.level in ("village", "point") and sub.township_id == tid:
                sheet.append(_total_cells(sub))
        sheet.append([])
        sheet.append(LINE_HEADERS)
        header_row = sheet.max_row
        for cell in sheet[header_row]:
            cell.font = Font(bold=True)
        elder_lines = lines_by_township.get(tid, [])
        for ln in elder_lines:
            sheet.append(_line_cells(ln))
        sheet.append(["合计", "", "", "", "", "", "", sum(ln.meals for ln in elder_lines),
                      sum((ln.amount for ln in elder_lines), ZERO)])
        money_columns(sheet, (5, 6, 7), start_row=3, end_row=header_row - 2)
        money_columns(sheet, (9,), start_row=header_row + 1)
        for col, width in zip("ABCDEFGHI", (14, 14, 18, 12, 10, 22, 12, 10, 14), strict=True):
            sheet.column_dimensions[col].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def money_columns(ws: Any, columns: Sequence[int], start_row: int, end_row: int | None = None) -> None:
    for row in ws.iter_rows(min_row=start_row, max_row=end_row or ws.max_row):
        for cell in row:
            if cell.column in columns and isinstance(cell.value, Decimal):
                cell.number_format = "0.00"
                cell.alignment = Alignment(horizontal="right")


def to_csv(data: ExportData) -> str:
    """Per-elder lines then the totals, as UTF-8 CSV (with a BOM so spreadsheet programs read Chinese)."""
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(LINE_HEADERS)
    for ln in data.lines:
        w.writerow([str(c) for c in _line_cells(ln)])
    w.writerow([])
    w.writerow(TOTAL_HEADERS)
    for t in data.totals:
        w.writerow([str(c) for c in _total_cells(t)])
    return out.getvalue()
