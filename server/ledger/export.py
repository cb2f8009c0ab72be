"""The monthly ledger of a village or township as an XLSX workbook (openpyxl), and its CLI.

Every sheet has two header rows: Chinese first (what people read), then the English field keys (what
scripts read); data starts on row 3. Times are local times of the county's zone (Excel has no time
zones; the zone is stated on the summary sheet). Text that would start a formula is stored as text.

Sheets: 概况 summary · 告警记录 alerts · 告警时间线 alert timeline · 传感器报警 edge alarms ·
巡检记录 inspections with their evidence · 检查项 items · 问题整改 problems · 留样记录 meal samples ·
漏检 missing checks · 传感器日汇总 per-day evidence · 停业日 closed days.

    python -m server.ledger.export --township 3 --month 2026-06 --out ledger.xlsx
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from server.alerts.rules import HAZARD_ZH, SEVERITY_ZH
from server.errors import ServerError
from server.settings import load_settings

from .calendar import AREA_ZH, KIND_ZH, InspectionKind
from .evidence import LEVEL_ZH, Evidence
from .schemas import parse_month
from .service import LedgerService, PlaceMonth
from .settings import LedgerSettings

log = logging.getLogger(__name__)

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER_ROWS = 2
STATE_ZH = {"open": "未确认", "acknowledged": "已确认", "resolved": "已解除"}
EVENT_ZH = {"opened": "报警产生", "severity_changed": "级别变化", "acknowledged": "确认", "cleared": "条件消失",
            "recurred": "再次出现", "confirmed": "现场确认", "resolved": "解除", "corroborated": "平台规则印证"}
RECTIFICATION_ZH = {"fixed_at_once": "立即整改", "deadline": "限期整改"}
ROLE_ZH = {"caregiver": "护理员", "village_officer": "村安全员", "township_officer": "乡镇负责人",
           "bureau_admin": "民政局管理员", "bureau_viewer": "民政局"}
MEAL_ZH = {"breakfast": "早餐", "lunch": "午餐", "dinner": "晚餐"}
NO_ALERT_TABLES = "本服务器尚未启用告警模块（无告警表）"

Column = tuple[str, str]  # (Chinese header, field key)


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("是" if value else "否")


class _Sheets:
    """Writes rows as values Excel understands: local naive times, text never read as a formula."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.book = Workbook()
        self._first = True

    def cell_value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(self.tz).replace(tzinfo=None)
        if isinstance(value, (list, tuple, set, frozenset)):
            return "、".join(str(v) for v in value)
        if isinstance(value, dict):
            return "; ".join(f"{k}={v}" for k, v in value.items())
        return value

    def sheet(self, title: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> Worksheet:
        ws = self.book.active if self._first else self.book.create_sheet()
        assert ws is not None
        self._first = False
        ws.title = title
        ws.append([zh for zh, _ in columns])
        ws.append([key for _, key in columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for cell in ws[2]:
            cell.font = Font(color="808080", size=8)
            cell.fill = PatternFill("solid", fgColor="F2F2F2")
        for row in rows:
            ws.append([self.cell_value(v) for v in row])
            for cell in ws[ws.max_row]:
                if cell.data_type == "f":  # user text such as "=HYPERLINK(...)" must stay text
                    cell.data_type = "s"
                elif isinstance(cell.value, datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm"
                elif isinstance(cell.value, date):
                    cell.number_format = "yyyy-mm-dd"
        ws.freeze_panes = ws.cell(row=HEADER_ROWS + 1, column=1)
        for i, (zh, key) in enumerate(columns, start=1):
            ws.column_dimensions[get_column_letter(i)].width = max(10, min(40, 2 * len(zh) + 4, len(key) + 4))
        return ws


def export_filename(ledger: PlaceMonth) -> str:
    """台账_<place>_<YYYY-MM>.xlsx"""
    return f"安全台账_{ledger.place_name}_{ledger.year:04d}-{ledger.month:02d}.xlsx"


def _evidence_cells(e: Evidence) -> list[Any]:
    return [e.gas_lel_max, e.co_ppm_max, e.residual_current_ma_max, e.temperature_c_max, e.voltage_min,
            e.voltage_max, e.voltage_out_of_range, e.alarms, e.alarms_not_cleared, e.alerts, e.alerts_unresolved,
            e.readings, e.hours_covered, e.hours_elapsed]


EVIDENCE_COLUMNS: list[Column] = [
    ("最高可燃气体浓度(%LEL)", "gas_lel_max"), ("最高一氧化碳(ppm)", "co_ppm_max"),
    ("最大剩余电流(mA)", "residual_current_ma_max"), ("最高线缆温度(°C)", "temperature_c_max"),
    ("最低电压(V)", "voltage_min"), ("最高电压(V)", "voltage_max"), ("电压越限读数", "voltage_out_of_range"),
    ("传感器报警次数", "alarms"), ("未恢复报警", "alarms_not_cleared"), ("告警次数", "alerts"),
    ("未解除告警", "alerts_unresolved"), ("读数条数", "readings"), ("有数据小时", "hours_covered"),
    ("应有小时", "hours_elapsed"),
]


def build_workbook(ledger: PlaceMonth) -> Workbook:
    """The workbook of a service.PlaceMonth."""
    s = _Sheets(ZoneInfo(ledger.timezone))
    names = {p["id"]: p["name"] for p in ledger.points}
    villages = {p["id"]: p["village"] for p in ledger.points}
    inspections = ledger.inspections
    problems = [p for i in inspections for p in i.problems]
    samples = [x for i in inspections for x in i.samples]
    by_kind = {k: sum(1 for i in inspections if i.kind is k) for k in InspectionKind}
    missing_by_kind = {k: sum(1 for m in ledger.missing if m.kind is k) for k in InspectionKind}
    alerts = ledger.alerts
    summary: list[tuple[str, str, Any]] = [
        ("单位", "place", f"{ledger.township} {ledger.place_name}" if ledger.place_kind == "village"
         else ledger.place_name),
        ("单位类型", "place_kind", "村" if ledger.place_kind == "village" else "乡镇"),
        ("月份", "month", f"{ledger.year:04d}-{ledger.month:02d}"),
        ("时区", "timezone", ledger.timezone),
        ("生成时间", "generated_at", ledger.generated_at),
        ("助餐点数", "points", len(ledger.points)),
        *[(f"{KIND_ZH[k]}次数", f"inspections_{k.value}", by_kind[k]) for k in InspectionKind],
        *[(f"漏{KIND_ZH[k]}", f"missing_{k.value}", missing_by_kind[k]) for k in InspectionKind
          if ledger.place_kind == "township" or k is not InspectionKind.MONTHLY],
        ("发现问题", "problems", len(problems)),
        ("未整改问题", "problems_open", sum(1 for p in problems if p.done_at is None)),
        ("逾期未整改", "problems_overdue", sum(1 for p in problems if p.overdue)),
        ("留样不足规定时长", "samples_short", sum(1 for x in samples if x.kept_long_enough is False)),
        ("传感器报警次数", "sensor_alarms", len(ledger.sensor_alarms)),
        ("告警次数", "alerts", len(alerts) if alerts is not None else NO_ALERT_TABLES),
        ("未解除告警", "alerts_unresolved",
         sum(1 for a in alerts if a["state"] != "resolved") if alerts is not None else NO_ALERT_TABLES),
    ]
    s.sheet("概况", [("项目", "item"), ("键", "key"), ("值", "value")], summary)

    alert_rows: list[list[Any]] = [[NO_ALERT_TABLES]] if alerts is None else [
        [a["id"], a["point_id"], names.get(a["point_id"]), a["device_id"], a["condition"],
         HAZARD_ZH.get(a["hazard"], a["hazard"]), SEVERITY_ZH.get(a["peak_severity"], a["peak_severity"]),
         STATE_ZH.get(a["state"], a["state"]), a["opened_at"], a["last_seen"], a["count"], a["last_value"], a["unit"],
         a["ack_by"], a["ack_at"], a["ack_channel"], a["confirmed_by"], a["confirmed_at"], a["confirm_note"],
         a["cleared_at"], a["resolved_at"], a["resolved_by"], a["message"]] for a in alerts]
    s.sheet("告警记录", [
        ("告警编号", "id"), ("助餐点编号", "point_id"), ("助餐点", "point_name"), ("设备", "device_id"),
        ("条件", "condition"), ("类别", "hazard"), ("最高级别", "peak_severity"), ("状态", "state"),
        ("发生时间", "opened_at"), ("最后出现", "last_seen"), ("次数", "count"), ("数值", "last_value"),
        ("单位", "unit"), ("确认人", "ack_by"), ("确认时间", "ack_at"), ("确认渠道", "ack_channel"),
        ("现场确认人", "confirmed_by"), ("现场确认时间", "confirmed_at"), ("整改说明", "confirm_note"),
        ("条件消失时间", "cleared_at"), ("解除时间", "resolved_at"), ("解除人", "resolved_by"), ("消息", "message"),
    ], alert_rows)
    s.sheet("告警时间线", [
        ("告警编号", "alert_id"), ("时间", "time"), ("事件", "kind"), ("操作人/通知对象", "actor"),
        ("渠道", "channel"), ("成功", "ok"), ("详情", "detail"),
    ], ([t["alert_id"], t["time"], _event_zh(t["kind"]), t["actor"], t["channel"], _yes_no(t["ok"]), t["detail"]]
        for t in ledger.alert_timeline))

    s.sheet("传感器报警", [
        ("助餐点编号", "point_id"), ("助餐点", "point_name"), ("设备", "device_id"), ("通道", "channel"),
        ("规则", "rule"), ("报警时间", "raised_at"), ("级别", "level"), ("最高级别", "peak_level"),
        ("数值", "value"), ("单位", "unit"), ("阈值", "threshold"), ("锁存", "latched"), ("联动动作", "actions"),
        ("恢复正常时间", "cleared_at"), ("持续分钟", "minutes"),
    ], ([a.point_id, names.get(a.point_id), a.device_id, a.channel, a.rule, a.raised_at, LEVEL_ZH.get(a.level, a.level),
         LEVEL_ZH.get(a.peak_level, a.peak_level), a.value, a.unit, a.threshold, _yes_no(a.latched), a.actions,
         a.cleared_at, round((a.cleared_at - a.raised_at).total_seconds() / 60, 1) if a.cleared_at else None]
        for a in ledger.sensor_alarms))

    s.sheet("巡检记录", [
        ("记录编号", "id"), ("助餐点编号", "point_id"), ("助餐点", "point_name"), ("村", "village"),
        ("类型", "kind"), ("周期开始", "period_start"), ("检查时间", "inspected_at"), ("录入时间", "recorded_at"),
        ("检查人", "inspector_name"), ("角色", "inspector_role"), ("账号", "inspector"),
        ("检查项", "items"), ("不合格项", "failed_items"), ("发现问题", "problems"), ("备注", "note"),
        *EVIDENCE_COLUMNS,
    ], ([i.id, i.point_id, names.get(i.point_id), villages.get(i.point_id), KIND_ZH[i.kind], i.period_start,
         i.inspected_at, i.recorded_at, i.inspector_name, ROLE_ZH.get(i.inspector_role, i.inspector_role),
         i.inspector, len(i.items), sum(1 for x in i.items if not x.passed), len(i.problems), i.note,
         *_evidence_cells(i.evidence)] for i in inspections))

    s.sheet("检查项", [
        ("记录编号", "inspection_id"), ("助餐点编号", "point_id"), ("序号", "position"), ("类别", "area"),
        ("检查内容", "item"), ("结果", "passed"), ("说明", "note"),
    ], ([i.id, i.point_id, x.position + 1, AREA_ZH[x.area], x.item, "合格" if x.passed else "不合格", x.note]
        for i in inspections for x in i.items))

    s.sheet("问题整改", [
        ("问题编号", "id"), ("记录编号", "inspection_id"), ("助餐点编号", "point_id"), ("助餐点", "point_name"),
        ("问题描述", "description"), ("整改方式", "rectification"), ("整改期限", "deadline"),
        ("完成时间", "done_at"), ("完成人", "done_by"), ("整改情况", "done_note"), ("逾期", "overdue"),
    ], ([p.id, p.inspection_id, p.point_id, names.get(p.point_id), p.description,
         RECTIFICATION_ZH.get(p.rectification, p.rectification), p.deadline, p.done_at, p.done_by, p.done_note,
         _yes_no(p.overdue)] for p in problems))

    s.sheet("留样记录", [
        ("留样编号", "id"), ("记录编号", "inspection_id"), ("助餐点编号", "point_id"), ("餐次", "meal"),
        ("菜品", "dishes"), ("留样时间", "taken_at"), ("销毁时间", "disposed_at"), ("销毁人", "disposed_by"),
        ("留存小时", "kept_hours"), ("达到规定时长", "kept_long_enough"),
    ], ([x.id, x.inspection_id, x.point_id, MEAL_ZH.get(x.meal, x.meal), x.dishes, x.taken_at, x.disposed_at,
         x.disposed_by, x.kept_hours, _yes_no(x.kept_long_enough)] for x in samples))

    s.sheet("漏检", [
        ("助餐点编号", "point_id"), ("助餐点", "point_name"), ("村", "village"), ("类型", "kind"),
        ("周期开始", "period_start"), ("周期结束", "period_last_day"), ("责任人", "responsible_role"),
    ], ([m.point_id, m.point_name, m.village, KIND_ZH[m.kind], m.period_start, date.fromordinal(
        m.period_end.toordinal() - 1), ROLE_ZH.get(m.responsible_role, m.responsible_role)] for m in ledger.missing))

    s.sheet("传感器日汇总", [("助餐点编号", "point_id"), ("助餐点", "point_name"), ("日期", "day"), *EVIDENCE_COLUMNS],
            ([p, names.get(p), e.period_start, *_evidence_cells(e)] for p, e in ledger.daily_evidence))

    s.sheet("停业日", [("助餐点编号", "point_id"), ("日期", "day"), ("原因", "reason"), ("登记人", "recorded_by"),
                     ("登记时间", "recorded_at")],
            ([c.point_id, c.day, c.reason, c.recorded_by, c.recorded_at] for c in ledger.closures))
    return s.book


def _event_zh(kind: str) -> str:
    if kind.startswith("notify:"):
        return f"通知（{kind.split(':', 1)[1]}）"
    return EVENT_ZH.get(kind, kind)


def workbook_bytes(ledger: PlaceMonth) -> bytes:
    """The XLSX file of a service.PlaceMonth."""
    out = io.BytesIO()
    build_workbook(ledger).save(out)
    return out.getvalue()


def export_month(dsn: str, path: Path, *, year: int, month: int, village_id: int | None = None,
                 township_id: int | None = None, timezone: str = "Asia/Shanghai",
                 now: datetime | None = None) -> Path:
    """Write the month's ledger of one village or township to `path` (for the CLI and scripts)."""
    if (village_id is None) == (township_id is None):
        raise ValueError("give exactly one of village_id and township_id")
    service = LedgerService(LedgerSettings(), timezone)
    with psycopg.connect(dsn) as conn:
        ledger = service.month(conn, village_id=village_id, township_id=township_id, year=year, month=month,
                               now=now or datetime.now(UTC))
        conn.commit()
    path.write_bytes(workbook_bytes(ledger))
    return path


def main(argv: list[str] | None = None) -> int:
    """Export one month's ledger of a village or township to an XLSX file."""
    parser = argparse.ArgumentParser(prog="yangyi-ledger-export", description=__doc__.splitlines()[0])
    place = parser.add_mutually_exclusive_group(required=True)
    place.add_argument("--village", type=int, help="village id")
    place.add_argument("--township", type=int, help="township id")
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--out", type=Path, required=True, help="the .xlsx file to write")
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: the server's settings)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        year, month = parse_month(args.month)
        settings = load_settings()
        dsn = args.dsn or settings.db.resolved_dsn()
        export_month(dsn, args.out, year=year, month=month, village_id=args.village, township_id=args.township,
                     timezone=settings.api.timezone)
    except (ValueError, ServerError) as exc:
        print(f"yangyi-ledger-export: {exc}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
