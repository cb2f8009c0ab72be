"""Import and export of the bureau's registry workbook (elders, categories, cards) with openpyxl.

Layout: one workbook, up to three sheets, the header row first (column order free, headers exact):

    老人      老人编号 (optional: the bureau's id; empty → matched by ID number or a new E-number),
              姓名*, 身份证号*, 联系电话, 住址, 乡镇*, 村/社区*, 户籍* (本地 | 外地),
              居住起始日期 (外地: living in the county since; long-term residents count as local),
              状态 (在册 | 迁出 | 已故; default 在册), 状态日期 (迁出/已故: first day it applies),
              常去助餐点 (a meal point id)
    人群类别  身份证号*, 人群类别* (特困/三无, 低保, 低保边缘, 失能, 重残, 计生特扶/失独, 优抚,
              高龄/百岁, 空巢/独居, or the code: tekun, dibao …), 证明材料*, 起始日期*, 截止日期
    助餐卡    身份证号*, 卡号*, 卡号格式 (em_hex | em_dec | em_w26 | uid_hex | uid_dec; empty when the
              卡号 is canonical, EM:… or UID:…), 绑定日期 (default: the import time),
              状态 (正常 | 挂失; default 正常), 挂失日期 (挂失: when)
    (* required.) Dates: a date cell, 2024-06-01, 2024/6/1 or 2024年6月1日.

Every row is checked and reported (sheet, row, column, message): the GB 11643 check character,
dates, a known category, duplicates inside the file, an unknown township/village or meal point, a
card already bound to someone else. With any error nothing is written. A dry run checks and counts
without writing. Re-importing the same file changes nothing (elders are matched by ID number, a
category by elder + category + start date, a card by its canonical id): the report counts rows
added, updated and unchanged. Categories are never rewritten in place: the only change an import
makes to a stored category is ending it (a 截止日期 where there was none).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from openpyxl import Workbook, load_workbook

from firmware_bridge import cardid, residentid
from firmware_bridge.errors import CardIdError, ResidentIdError
from server.subsidy.errors import SubsidyError
from server.subsidy.policy import CATEGORY_LABELS_ZH, Category

ELDERS_SHEET, CATEGORIES_SHEET, CARDS_SHEET = "老人", "人群类别", "助餐卡"
ELDER_COLUMNS = ("老人编号", "姓名", "身份证号", "联系电话", "住址", "乡镇", "村/社区", "户籍", "居住起始日期", "状态",
                 "状态日期", "常去助餐点")
CATEGORY_COLUMNS = ("身份证号", "人群类别", "证明材料", "起始日期", "截止日期")
CARD_COLUMNS = ("身份证号", "卡号", "卡号格式", "绑定日期", "状态", "挂失日期")
REQUIRED = {
    ELDERS_SHEET: ("姓名", "身份证号", "乡镇", "村/社区", "户籍"),
    CATEGORIES_SHEET: ("身份证号", "人群类别", "证明材料", "起始日期"),
    CARDS_SHEET: ("身份证号", "卡号"),
}
STATUS_ZH = {"在册": "active", "迁出": "moved", "已故": "deceased"}
STATUS_OUT = {v: k for k, v in STATUS_ZH.items()}
HUKOU_ZH = {"本地": True, "外地": False}
CARD_STATE_ZH = {"正常": "active", "挂失": "lost"}
CATEGORY_BY_TEXT: dict[str, Category] = {**{v: k for k, v in CATEGORY_LABELS_ZH.items()},
                                         **{c.value: c for c in Category}}
_ELDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")
_DATE_TEXT = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")

Conn = psycopg.Connection[Any]
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")


class ImportFileError(SubsidyError):
    """The workbook cannot be read, or has none of the known sheets."""


@dataclass(frozen=True, slots=True)
class Problem:
    sheet: str
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.sheet} 第{self.row}行 [{self.column}]: {self.message}"


@dataclass
class Report:
    """What an import found and did (or would do, in a dry run)."""

    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, kind: dict[str, int], sheet: str) -> None:
        kind[sheet] = kind.get(sheet, 0) + 1

    def summary(self) -> str:
        lines = []
        for sheet in (ELDERS_SHEET, CATEGORIES_SHEET, CARDS_SHEET):
            if sheet in self.rows:
                lines.append(f"{sheet}: {self.rows[sheet]} rows, {self.added.get(sheet, 0)} added, "
                             f"{self.updated.get(sheet, 0)} updated, {self.unchanged.get(sheet, 0)} unchanged")
        state = "dry run, nothing written" if self.dry_run else ("written" if self.ok else "nothing written")
        lines.append(f"{len(self.problems)} problems; {state}")
        return "\n".join(lines)


def parse_date(value: Any) -> date | None:
    """A date from a cell: a date/datetime, or text 2024-06-01, 2024/6/1, 2024年6月1日; None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    match = _DATE_TEXT.match(str(value).strip())
    if match is None:
        raise ValueError(f"not a date: {value!r}")
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError as exc:
        raise ValueError(f"not a date: {value!r}") from exc


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


@dataclass
class _Sheet:
    name: str
    rows: list[tuple[int, dict[str, Any]]]


def _read(data: bytes, report: Report) -> dict[str, _Sheet]:
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise ImportFileError(f"not an .xlsx workbook: {exc}") from exc
    known = {ELDERS_SHEET: ELDER_COLUMNS, CATEGORIES_SHEET: CATEGORY_COLUMNS, CARDS_SHEET: CARD_COLUMNS}
    out: dict[str, _Sheet] = {}
    for name, columns in known.items():
        if name not in wb.sheetnames:
            continue
        it = wb[name].iter_rows(values_only=True)
        header = [_text(h) for h in next(it, ())]
        missing = [c for c in REQUIRED[name] if c not in header]
        if missing:
            report.problems.append(Problem(name, 1, ",".join(missing), "missing required column(s)"))
            continue
        unknown = [h for h in header if h and h not in columns]
        if unknown:
            report.problems.append(Problem(name, 1, ",".join(unknown), "unknown column(s)"))
        rows = []
        for i, values in enumerate(it, start=2):
            cells = {h: v for h, v in zip(header, values, strict=False) if h}
            if all(_text(v) == "" for v in cells.values()):
                continue
            rows.append((i, cells))
        out[name] = _Sheet(name, rows)
        report.rows[name] = len(rows)
    if not out and not report.problems:
        raise ImportFileError(f"no sheet named {ELDERS_SHEET}, {CATEGORIES_SHEET} or {CARDS_SHEET}")
    return out


def _places(conn: Conn) -> dict[tuple[str, str], int]:
    return {(t, v): vid for vid, v, t in conn.execute(
        "SELECT v.id, v.name, t.name FROM villages v JOIN townships t ON t.id = v.township_id")}


def import_workbook(conn: Conn, data: bytes, *, at: datetime | None = None, dry_run: bool = False,
                    tz: ZoneInfo = DEFAULT_TZ, progress: Callable[[int, int], None] | None = None) -> Report:
    """Check and (unless dry_run or any problem) write the workbook's rows in one transaction.

    Dates of card bindings and losses are local days in `tz` (the binding starts at local midnight)."""
    at = at or datetime.now(UTC)
    report = Report(dry_run)
    sheets = _read(data, report)
    total = sum(len(s.rows) for s in sheets.values())
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    with conn.transaction():
        places = _places(conn)
        points = {r[0] for r in conn.execute("SELECT id FROM meal_points")}
        by_number: dict[str, str] = {}
        if ELDERS_SHEET in sheets:
            _elders(conn, sheets[ELDERS_SHEET], places, points, report, by_number, at, tick)
        if CATEGORIES_SHEET in sheets:
            _categories(conn, sheets[CATEGORIES_SHEET], report, by_number, tick)
        if CARDS_SHEET in sheets:
            _cards(conn, sheets[CARDS_SHEET], report, by_number, at, tz, tick)
        if dry_run or report.problems:
            raise psycopg.Rollback()  # leaves the block, undoing every write, without an error
    return report


def _elder_id_for(conn: Conn, number: str, by_number: dict[str, str]) -> str | None:
    if number in by_number:
        return by_number[number]
    row = conn.execute("SELECT id FROM elders WHERE id_number = %s", (number,)).fetchone()
    return row[0] if row else None


def _elders(conn: Conn, sheet: _Sheet, places: dict[tuple[str, str], int], points: set[str], report: Report,
            by_number: dict[str, str], at: datetime, tick: Callable[[], None]) -> None:
    seen_numbers: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    for row, cells in sheet.rows:
        tick()
        bad = len(report.problems)

        def problem(column: str, message: str, row: int = row) -> None:
            report.problems.append(Problem(sheet.name, row, column, message))

        name = _text(cells.get("姓名"))
        if not name or len(name) > 64:
            problem("姓名", "required, at most 64 characters")
        number = _text(cells.get("身份证号")).upper()
        rid = None
        try:
            rid = residentid.parse(number)
        except ResidentIdError as exc:
            problem("身份证号", str(exc))
        if number in seen_numbers:
            problem("身份证号", f"same number as row {seen_numbers[number]}")
        seen_numbers.setdefault(number, row)
        elder_id = _text(cells.get("老人编号"))
        if elder_id:
            if not _ELDER_ID.match(elder_id):
                problem("老人编号", "letters, digits, '.', '_' or '-' only (at most 64)")
            if elder_id in seen_ids:
                problem("老人编号", f"same id as row {seen_ids[elder_id]}")
            seen_ids.setdefault(elder_id, row)
        phone = _text(cells.get("联系电话")) or None
        if phone is not None and not _PHONE.match(phone):
            problem("联系电话", f"not a phone number: {phone!r}")
        address = _text(cells.get("住址")) or None
        if address is not None and len(address) > 200:
            problem("住址", "at most 200 characters")
        township, village = _text(cells.get("乡镇")), _text(cells.get("村/社区"))
        village_id = places.get((township, village))
        if village_id is None:
            problem("村/社区", f"unknown village {township}/{village}")
        hukou = HUKOU_ZH.get(_text(cells.get("户籍")))
        if hukou is None:
            problem("户籍", "本地 or 外地")
        dates: dict[str, date | None] = {}
        for column in ("居住起始日期", "状态日期"):
            try:
                dates[column] = parse_date(cells.get(column))
            except ValueError as exc:
                problem(column, str(exc))
                dates[column] = None
        since = dates["居住起始日期"]
        if hukou and since is not None:
            problem("居住起始日期", "only for 外地 hukou")
        status = STATUS_ZH.get(_text(cells.get("状态")) or "在册")
        if status is None:
            problem("状态", "在册, 迁出 or 已故")
        status_date = dates["状态日期"]
        if status not in (None, "active") and status_date is None:
            problem("状态日期", "required for 迁出 / 已故")
        if status == "active" and status_date is not None:
            problem("状态日期", "only for 迁出 / 已故")
        home = _text(cells.get("常去助餐点")) or None
        if home is not None and home not in points:
            problem("常去助餐点", f"unknown meal point {home!r}")
        if len(report.problems) > bad or rid is None:
            continue
        fields = {"name": name, "id_number": rid.number, "birth_date": rid.birth_date, "sex": str(rid.sex),
                  "phone": phone, "address": address, "hukou_local": hukou, "resident_since": since,
                  "status": status, "status_date": status_date, "village_id": village_id, "home_point_id": home}
        existing = conn.execute(
            "SELECT id, name, phone, address, hukou_local, resident_since, status, status_date, village_id,"
            " home_point_id FROM elders WHERE id_number = %s", (rid.number,)).fetchone()
        if existing is None:
            if elder_id and conn.execute("SELECT 1 FROM elders WHERE id = %s", (elder_id,)).fetchone():
                problem("老人编号", f"{elder_id} belongs to another ID number")
                continue
            cols = ["name", "id_number", "birth_date", "sex", "phone", "address", "hukou_local", "resident_since",
                    "status", "status_date", "village_id", "home_point_id"]
            values = [fields[c] for c in cols]
            if elder_id:
                cols.insert(0, "id")
                values.insert(0, elder_id)
            new_id = conn.execute(
                f"INSERT INTO elders ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) RETURNING id",
                values,
            ).fetchone()
            assert new_id is not None
            by_number[rid.number] = new_id[0]
            report.count(report.added, sheet.name)
            continue
        by_number[rid.number] = existing[0]
        if elder_id and elder_id != existing[0]:
            problem("老人编号", f"this ID number is elder {existing[0]}, not {elder_id}")
            continue
        current = dict(zip(("name", "phone", "address", "hukou_local", "resident_since", "status", "status_date",
                            "village_id", "home_point_id"), existing[1:], strict=True))
        changes = {k: fields[k] for k in current if current[k] != fields[k]}
        if not changes:
            report.count(report.unchanged, sheet.name)
            continue
        sets = ", ".join(f"{k} = %s" for k in changes)
        conn.execute(f"UPDATE elders SET {sets}, updated_at = %s WHERE id = %s", [*changes.values(), at, existing[0]])
        report.count(report.updated, sheet.name)


def _categories(conn: Conn, sheet: _Sheet, report: Report, by_number: dict[str, str],
                tick: Callable[[], None]) -> None:
    seen: dict[tuple[str, str, date], int] = {}
    for row, cells in sheet.rows:
        tick()
        bad = len(report.problems)

        def problem(column: str, message: str, row: int = row) -> None:
            report.problems.append(Problem(sheet.name, row, column, message))

        number = _text(cells.get("身份证号")).upper()
        elder_id = None
        if not residentid.is_valid(number):
            problem("身份证号", "not a valid resident ID number")
        else:
            elder_id = _elder_id_for(conn, number, by_number)
            if elder_id is None:
                problem("身份证号", "no elder with this number (add them on the 老人 sheet)")
        category = CATEGORY_BY_TEXT.get(_text(cells.get("人群类别")))
        if category is None:
            problem("人群类别", f"unknown category {_text(cells.get('人群类别'))!r}")
        evidence = _text(cells.get("证明材料"))
        if not evidence:
            problem("证明材料", "required")
        start = end = None
        try:
            start = parse_date(cells.get("起始日期"))
            if start is None:
                problem("起始日期", "required")
        except ValueError as exc:
            problem("起始日期", str(exc))
        try:
            end = parse_date(cells.get("截止日期"))
        except ValueError as exc:
            problem("截止日期", str(exc))
        if start is not None and end is not None and end < start:
            problem("截止日期", "before the start")
        if len(report.problems) > bad or elder_id is None or category is None or start is None:
            continue
        key = (elder_id, str(category), start)
        if key in seen:
            problem("人群类别", f"same elder, category and start as row {seen[key]}")
            continue
        seen[key] = row
        found = conn.execute(
            "SELECT id, evidence, valid_to FROM elder_categories WHERE elder_id = %s AND category = %s"
            " AND valid_from = %s", key).fetchone()
        if found is None:
            conn.execute("INSERT INTO elder_categories (elder_id, category, evidence, valid_from, valid_to)"
                         " VALUES (%s, %s, %s, %s, %s)", (elder_id, str(category), evidence, start, end))
            report.count(report.added, sheet.name)
        elif (found[1], found[2]) == (evidence, end):
            report.count(report.unchanged, sheet.name)
        elif found[1] == evidence and found[2] is None and end is not None:
            conn.execute("UPDATE elder_categories SET valid_to = %s WHERE id = %s", (end, found[0]))
            report.count(report.updated, sheet.name)
        else:
            problem("证明材料", "differs from the stored row with this start; end that row in the registry and add a"
                               " new one")


def _cards(conn: Conn, sheet: _Sheet, report: Report, by_number: dict[str, str], at: datetime, tz: ZoneInfo,
           tick: Callable[[], None]) -> None:
    seen: dict[str, int] = {}
    for row, cells in sheet.rows:
        tick()
        bad = len(report.problems)

        def problem(column: str, message: str, row: int = row) -> None:
            report.problems.append(Problem(sheet.name, row, column, message))

        number = _text(cells.get("身份证号")).upper()
        elder_id = _elder_id_for(conn, number, by_number) if residentid.is_valid(number) else None
        if elder_id is None:
            problem("身份证号", "no elder with this valid number")
        printed = _text(cells.get("卡号"))
        fmt = _text(cells.get("卡号格式"))
        card = None
        try:
            if fmt:
                card = cardid.normalise(printed, cardid.CardIdSettings(cardid.CardFormat(fmt)))
            elif printed.upper().startswith(cardid.EM_PREFIX):
                card = cardid.normalise(printed[3:], cardid.CardIdSettings(cardid.CardFormat.EM_HEX))
            elif printed.upper().startswith(cardid.UID_PREFIX):
                card = cardid.normalise(printed[4:], cardid.CardIdSettings(cardid.CardFormat.UID_HEX))
            else:
                problem("卡号格式", "give the format (em_hex, em_dec, em_w26, uid_hex, uid_dec) or a canonical 卡号")
        except (CardIdError, ValueError) as exc:
            problem("卡号", str(exc))
        if card is not None and card.startswith(cardid.ID_PREFIX):
            problem("卡号", "a resident ID card needs no row: the ID number is the card")
            card = None
        state = CARD_STATE_ZH.get(_text(cells.get("状态")) or "正常")
        if state is None:
            problem("状态", "正常 or 挂失")
        bound = lost = None
        try:
            bound = parse_date(cells.get("绑定日期"))
            lost = parse_date(cells.get("挂失日期"))
        except ValueError as exc:
            problem("绑定日期/挂失日期", str(exc))
        if state == "lost" and lost is None:
            problem("挂失日期", "required for 挂失")
        if card is not None and card in seen:
            problem("卡号", f"same card as row {seen[card]}")
        if len(report.problems) > bad or card is None or elder_id is None:
            continue
        seen[card] = row
        bound_at = datetime.combine(bound, time(), tz) if bound else at
        lost_at = datetime.combine(lost, time(), tz) if lost else None
        open_row = conn.execute("SELECT id, elder_id, state, state_since FROM cards WHERE card_id = %s"
                                " AND bound_to IS NULL", (card,)).fetchone()
        if open_row is not None and open_row[1] != elder_id:
            problem("卡号", f"card {card} is bound to elder {open_row[1]}; release it in the registry first")
            continue
        if open_row is not None:
            if state == "lost" and open_row[2] == "active":
                conn.execute("UPDATE cards SET state = 'lost', state_since = %s WHERE id = %s", (lost_at, open_row[0]))
                report.count(report.updated, sheet.name)
            else:
                report.count(report.unchanged, sheet.name)
            continue
        if state == "active" and conn.execute(
                "SELECT 1 FROM cards WHERE elder_id = %s AND state = 'active' AND bound_to IS NULL",
                (elder_id,)).fetchone():
            problem("卡号", "the elder already has an active card; replace it in the registry (补办)")
            continue
        try:
            with conn.transaction():
                conn.execute("INSERT INTO cards (card_id, elder_id, state, state_since, bound_from) VALUES"
                             " (%s, %s, %s, %s, %s)", (card, elder_id, state, lost_at, bound_at))
        except psycopg.errors.IntegrityError as exc:
            problem("卡号", f"cannot bind: {str(exc).splitlines()[0]}")
            continue
        report.count(report.added, sheet.name)


def export_workbook(conn: Conn, village_ids: Iterable[int] | None = None, tz: ZoneInfo = DEFAULT_TZ) -> bytes:
    """The registry in the import layout (re-importing it changes nothing)."""
    where, params = ("", ()) if village_ids is None else (" WHERE e.village_id = ANY(%s)", (list(village_ids),))
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = ELDERS_SHEET
    ws.append(list(ELDER_COLUMNS))
    for r in conn.execute(
        "SELECT e.id, e.name, e.id_number, e.phone, e.address, t.name, v.name, e.hukou_local, e.resident_since,"
        " e.status, e.status_date, e.home_point_id FROM elders e LEFT JOIN villages v ON v.id = e.village_id"
        " LEFT JOIN townships t ON t.id = v.township_id" + where + " ORDER BY e.id", params,
    ):
        ws.append([r[0], r[1], r[2], r[3], r[4], r[5], r[6], "本地" if r[7] else "外地", r[8], STATUS_OUT[r[9]], r[10],
                   r[11]])
    cs = wb.create_sheet(CATEGORIES_SHEET)
    cs.append(list(CATEGORY_COLUMNS))
    for r in conn.execute(
        "SELECT e.id_number, g.category, g.evidence, g.valid_from, g.valid_to FROM elder_categories g"
        " JOIN elders e ON e.id = g.elder_id" + where + " ORDER BY e.id, g.id", params,
    ):
        cs.append([r[0], CATEGORY_LABELS_ZH[Category(r[1])], r[2], r[3], r[4]])
    ks = wb.create_sheet(CARDS_SHEET)
    ks.append(list(CARD_COLUMNS))
    for r in conn.execute(
        "SELECT e.id_number, c.card_id, c.bound_from, c.state, c.state_since FROM cards c"
        " JOIN elders e ON e.id = c.elder_id" + (where + " AND" if where else " WHERE")
        + " c.bound_to IS NULL AND c.state IN ('active', 'lost') ORDER BY e.id, c.id", params,
    ):
        ks.append([r[0], r[1], "", r[2].astimezone(tz).date(), "正常" if r[3] == "active" else "挂失",
                   r[4].astimezone(tz).date() if r[4] else None])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def read_file(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc}") from exc
