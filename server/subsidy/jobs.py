"""Scheduled work of the subsidy package, with the day passed in: draft the notices on the 1st, flag late ones.

`daily(conn, today)` is idempotent and meant to run once a day (any hour), e.g. from cron or a
systemd timer:

    # /etc/cron.d/yangyi-notices — 06:00 every day, county time
    0 6 * * *  yangyi  python -m server.subsidy.cli notices-daily

On the 1st (and on any later day until the due date, so a missed run catches up) it drafts every
village's notice for last month from the signed settlement, or a fresh computation while the month
is unsigned; a drafted notice is redrafted until it is published, never after. From the day after the
due date (the 10th by default) each unpublished notice is reported as overdue (logged at WARNING and
returned; the API shows status "overdue").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from server.subsidy import canonical, repository, service
from server.subsidy.eligibility import Elder
from server.subsidy.errors import SnapshotError
from server.subsidy.notice import (
    DEFAULT_DUE_DAY,
    Donation,
    DonationKind,
    DonorKind,
    NoticeStatus,
    ServiceRecord,
    ServiceType,
    VillageNotice,
    draft_notice,
    due_date,
    notice_status,
    render_html,
)
from server.subsidy.records import Month
from server.subsidy.settlement import Settlement

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


def settlement_for_notice(conn: Conn, month: Month) -> tuple[Settlement, int | None]:
    """The signed settlement of the month if it is signed, else a fresh computation (run id None)."""
    state = repository.month_state(conn, month)
    if state["state"] == "signed":
        snap, result = service.signed_settlement(conn, month)
        return result, int(snap["run_id"])
    result, _ = service.compute(conn, month)
    return result, None


def village_notice(conn: Conn, month: Month, village_id: int, today: date, *, settlement: Settlement | None = None,
                   due_day: int = DEFAULT_DUE_DAY) -> VillageNotice:
    """Draft one village's notice (not stored)."""
    if settlement is None:
        settlement, _ = settlement_for_notice(conn, month)
    book = service.book_or_raise(conn)
    start, end = month.first_day, month.next().first_day
    recs = [ServiceRecord(r["day"], r["elder_id"], str(r["village_id"]), ServiceType(r["service"]))
            for r in repository.services(conn, start, end, [village_id])]
    gifts = [Donation(r["donor"], DonorKind(r["donor_kind"]), DonationKind(r["kind"]), r["day"], str(r["village_id"]),
                      r["amount"], r["goods"], r["publish_name"], r["anonymous"])
             for r in repository.donations(conn, start, end, [village_id])]
    village_points = {t.unit_id for t in settlement.totals
                      if t.level.value == "point" and t.village_id == str(village_id)}
    people = {ln.elder_id for ln in settlement.lines if ln.tap.point_id in village_points} | {r.elder_id for r in recs}
    elders: dict[str, Elder] = {e.elder_id: e for e in repository.load_elders(conn, sorted(people))}
    names = {v["id"]: v for v in repository.villages(conn)}
    place = names.get(village_id, {})
    return draft_notice(settlement, str(village_id), elders=elders, services=recs, donations=gifts, drafted_on=today,
                        county=book.county, village_name=place.get("name", ""),
                        township_name=place.get("township", ""), due_day=due_day)


@dataclass(frozen=True, slots=True)
class DailyReport:
    month: Month
    drafted: list[int]
    kept_published: list[int]
    overdue: list[int]


def draft_all(conn: Conn, month: Month, today: date, *, due_day: int = DEFAULT_DUE_DAY) -> tuple[list[int], list[int]]:
    """Draft and store every village's notice for the month; return (drafted, left as published)."""
    settlement, run_id = settlement_for_notice(conn, month)
    drafted: list[int] = []
    kept: list[int] = []
    at = datetime.combine(today, datetime.min.time(), UTC)
    for v in repository.villages(conn):
        notice = village_notice(conn, month, int(v["id"]), today, settlement=settlement, due_day=due_day)
        html = render_html(notice)
        stored = repository.upsert_notice(conn, month, int(v["id"]), run_id, html, canonical.sha256_hex(html), at,
                                          due_date(month, due_day))
        (drafted if stored else kept).append(int(v["id"]))
    return drafted, kept


def overdue(conn: Conn, month: Month, today: date, *, due_day: int = DEFAULT_DUE_DAY) -> list[int]:
    """Villages whose notice for the month is not published and past due (missing drafts count too)."""
    published = {r["village_id"]: r["published_on"] for r in repository.notices(conn, month)}
    late = []
    for v in repository.villages(conn):
        vid = int(v["id"])
        if notice_status(month, published.get(vid), today, due_day) is NoticeStatus.OVERDUE:
            late.append(vid)
    return late


def daily(conn: Conn, today: date, *, due_day: int = DEFAULT_DUE_DAY) -> DailyReport:
    """The day's notice work for last month: draft up to the due date, then flag what is unpublished."""
    month = Month.of(today).previous()
    drafted: list[int] = []
    kept: list[int] = []
    if today <= due_date(month, due_day):
        try:
            drafted, kept = draft_all(conn, month, today, due_day=due_day)
        except (service.NoPolicyError, SnapshotError) as exc:
            logger.warning("cannot draft the %s notices: %s", month, exc)
    late = overdue(conn, month, today, due_day=due_day)
    if late:
        logger.warning("%d village notices for %s are not published by %s: villages %s", len(late), month,
                       due_date(month, due_day), late)
    return DailyReport(month, drafted, kept, late)
