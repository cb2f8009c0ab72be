"""Ledger use cases: record inspections under the plan's rules, read them back with their sensor
evidence, flag missing checks, and assemble a place's month for the export."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from server.auth.scopes import Principal, PrincipalKind, Role

from . import repository
from .calendar import (
    RESPONSIBLE,
    InspectionKind,
    Missing,
    PointSpan,
    ServiceCalendar,
    missing_inspections,
    month_bounds,
    period_end,
    period_start,
)
from .errors import AlreadyDoneError, ForbiddenKindError, InspectionRefusedError, LedgerNotFoundError
from .evidence import DayAlerts, Evidence, SensorAlarm, fuller, summarise
from .schemas import (
    AlertClosure,
    ClosureIn,
    ClosureOut,
    EvidenceDetail,
    InspectionCreate,
    InspectionOut,
    ItemOut,
    MissingOut,
    ProblemDone,
    ProblemOut,
    Rectification,
    SampleDisposal,
    SampleOut,
)
from .settings import LedgerSettings

log = logging.getLogger(__name__)
Conn = psycopg.Connection[Any]
HOUR = timedelta(hours=1)

# Field roles that may report a rectification done or a sample disposed of at their points.
FIELD_ROLES = frozenset({Role.CAREGIVER, Role.VILLAGE_OFFICER, Role.TOWNSHIP_OFFICER})
# Closing a point for a day excuses its daily check: not for the caregiver who owes that check.
CLOSURE_ROLES = frozenset({Role.VILLAGE_OFFICER, Role.TOWNSHIP_OFFICER, Role.BUREAU_ADMIN})


@dataclass(frozen=True, slots=True)
class PlaceMonth:
    """Everything the monthly ledger of a village or township shows."""

    place_kind: str  # "village" | "township"
    place_name: str
    township: str
    year: int
    month: int
    timezone: str
    generated_at: datetime
    points: list[dict[str, Any]]
    inspections: list[InspectionOut]
    missing: list[MissingOut]
    sensor_alarms: list[SensorAlarm]
    daily_evidence: list[tuple[str, Evidence]]  # (point, one day's evidence), days with data only
    alerts: list[dict[str, Any]] | None  # None: no alert tables on this server
    alert_timeline: list[dict[str, Any]]
    closures: list[ClosureOut]


class LedgerService:
    def __init__(self, settings: LedgerSettings, timezone: str) -> None:
        self.settings = settings
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        self.calendar = ServiceCalendar(frozenset(settings.service_weekdays))

    # ---- time ---------------------------------------------------------------------------------------

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.tz)

    # ---- recording ----------------------------------------------------------------------------------

    def record(self, conn: Conn, point_id: str, body: InspectionCreate, principal: Principal,
               now: datetime) -> InspectionOut:
        """Store one inspection with its items, problems and samples; return it with its evidence."""
        if repository.point(conn, point_id) is None:
            raise LedgerNotFoundError(f"no meal point {point_id!r}")
        self._check(body, principal, now)
        kind = body.kind
        first = period_start(kind, self.local_day(body.inspected_at))
        name = body.inspector_name or principal.display_name or principal.name
        inspection_id = repository.insert_inspection(
            conn, point_id=point_id, kind=kind.value, period_start=first, inspected_at=body.inspected_at,
            recorded_at=now, inspector=principal.actor,
            inspector_user_id=principal.id if principal.kind is PrincipalKind.USER else None,
            inspector_name=name, inspector_role=principal.role.value, note=body.note)
        repository.insert_items(conn, inspection_id, [(i.area.value, i.item, i.passed, i.note) for i in body.items])
        for p in body.problems:
            at_once = p.rectification is Rectification.FIXED_AT_ONCE
            repository.insert_problem(
                conn, inspection_id=inspection_id, point_id=point_id, item_position=p.item_index,
                description=p.description, rectification=p.rectification.value, deadline=p.deadline,
                done_at=body.inspected_at if at_once else None, done_by=principal.actor if at_once else None,
                done_note=p.note if at_once else None)
        for s in body.samples:
            repository.insert_sample(conn, inspection_id=inspection_id, point_id=point_id, meal=s.meal.value,
                                     dishes=s.dishes, taken_at=s.taken_at)
        log.info("ledger: %s recorded a %s inspection of %s for %s", principal.actor, kind.value, point_id, first)
        row = repository.inspection(conn, point_id, inspection_id)
        assert row is not None
        return self._assemble(conn, [row], now)[0]

    def _check(self, body: InspectionCreate, principal: Principal, now: datetime) -> None:
        s = self.settings
        responsible = RESPONSIBLE[body.kind]
        if principal.role is not responsible:
            raise ForbiddenKindError(f"{body.kind.value} inspections are recorded by a {responsible.value},"
                                     f" not a {principal.role.value}")
        if body.inspected_at > now + timedelta(seconds=s.future_skew_s):
            raise InspectionRefusedError("inspected_at is in the future")
        if self.local_day(body.inspected_at) < self.local_day(now) - timedelta(days=s.backfill_days):
            raise InspectionRefusedError(f"inspections may be entered up to {s.backfill_days} days afterwards")
        missing_areas = set(s.required_areas) - {i.area for i in body.items}
        if missing_areas:
            raise InspectionRefusedError(f"the inspection must cover {sorted(a.value for a in missing_areas)}")
        if body.kind is InspectionKind.DAILY and s.daily_requires_sample and not body.samples:
            raise InspectionRefusedError("the daily check records the meal samples kept (留样)")
        for sample in body.samples:
            if sample.taken_at > now + timedelta(seconds=s.future_skew_s):
                raise InspectionRefusedError("a meal sample's taken_at is in the future")

    def problem_done(self, conn: Conn, point_id: str, problem_id: int, body: ProblemDone, principal: Principal,
                     now: datetime) -> ProblemOut:
        """Record that a problem with a deadline has been rectified."""
        if principal.role not in FIELD_ROLES:
            raise ForbiddenKindError("rectifications are reported by caregivers and village or township officers")
        row = repository.problem_for_update(conn, point_id, problem_id)
        if row is None:
            raise LedgerNotFoundError(f"no problem {problem_id} at meal point {point_id!r}")
        if row["done_at"] is not None:
            raise AlreadyDoneError(f"problem {problem_id} was rectified at {row['done_at'].isoformat()}")
        if body.done_at > now + timedelta(seconds=self.settings.future_skew_s):
            raise InspectionRefusedError("done_at is in the future")
        found = repository.inspection(conn, point_id, int(row["inspection_id"]))
        if found is not None and body.done_at < found["inspected_at"]:
            raise InspectionRefusedError("done_at is before the inspection that found the problem")
        return self._problem(repository.problem_done(conn, problem_id, body.done_at, principal.actor, body.note),
                             self.local_day(now))

    def dispose_sample(self, conn: Conn, point_id: str, sample_id: int, body: SampleDisposal,
                       principal: Principal, now: datetime) -> SampleOut:
        """Record a meal sample's disposal; one kept too short is recorded and shown as such."""
        if principal.role not in FIELD_ROLES:
            raise ForbiddenKindError("sample disposal is recorded by caregivers and village or township officers")
        row = repository.sample_for_update(conn, point_id, sample_id)
        if row is None:
            raise LedgerNotFoundError(f"no meal sample {sample_id} at meal point {point_id!r}")
        if row["disposed_at"] is not None:
            raise AlreadyDoneError(f"sample {sample_id} was disposed of at {row['disposed_at'].isoformat()}")
        if body.disposed_at < row["taken_at"]:
            raise InspectionRefusedError("disposed_at is before the sample was taken")
        if body.disposed_at > now + timedelta(seconds=self.settings.future_skew_s):
            raise InspectionRefusedError("disposed_at is in the future")
        return self._sample(repository.sample_disposed(conn, sample_id, body.disposed_at, principal.actor))

    def add_closure(self, conn: Conn, point_id: str, body: ClosureIn, principal: Principal,
                    now: datetime) -> ClosureOut:
        """Mark a day the point was closed: no daily check is due then."""
        if principal.role not in CLOSURE_ROLES:
            raise ForbiddenKindError("closed days are recorded by village or township officers")
        if repository.point(conn, point_id) is None:
            raise LedgerNotFoundError(f"no meal point {point_id!r}")
        return ClosureOut(**repository.upsert_closure(conn, point_id, body.day, body.reason, principal.actor, now))

    # ---- reading ------------------------------------------------------------------------------------

    def inspections(self, conn: Conn, point_ids: Sequence[str], start: date, end: date,
                    now: datetime) -> list[InspectionOut]:
        """Inspections whose period ends in [start, end), each with its evidence."""
        return self._assemble(conn, repository.inspections(conn, point_ids, start, end), now)

    def inspection(self, conn: Conn, point_id: str, inspection_id: int, now: datetime) -> InspectionOut:
        row = repository.inspection(conn, point_id, inspection_id)
        if row is None:
            raise LedgerNotFoundError(f"no inspection {inspection_id} at meal point {point_id!r}")
        return self._assemble(conn, [row], now)[0]

    def evidence(self, conn: Conn, point_id: str, first: date, stop: date, now: datetime) -> EvidenceDetail:
        """The sensor evidence of one point over the local days [first, stop), with each alarm and alert
        and how it was closed."""
        if repository.point(conn, point_id) is None:
            raise LedgerNotFoundError(f"no meal point {point_id!r}")
        start, end = self.day_start(first), self.day_start(stop)
        alerts = None
        if repository.alerts_available(conn):
            alerts = [AlertClosure.model_validate(a)
                      for a in repository.alerts_with_timeline(conn, [point_id], start, end)[0]]
        return EvidenceDetail(evidence=self._evidence(conn, [(point_id, first, stop)], now)[0],
                              sensor_alarms=repository.sensor_alarms(conn, [point_id], start, end), alerts=alerts)

    def missing(self, conn: Conn, points: Sequence[dict[str, Any]], start: date, end: date, now: datetime,
                kinds: Iterable[InspectionKind] = tuple(InspectionKind)) -> list[MissingOut]:
        """Required inspections in [start, end) that were not recorded, for these points (repository rows)."""
        ids = [p["id"] for p in points]
        closed: dict[str, set[date]] = defaultdict(set)
        for c in repository.closures(conn, ids, start - timedelta(days=7), end + timedelta(days=7)):
            closed[c["point_id"]].add(c["day"])
        spans = [PointSpan(p["id"], self.local_day(p["created_at"]), frozenset(closed[p["id"]])) for p in points]
        records = [(p, InspectionKind(k), s) for p, k, s in repository.inspection_periods(
            conn, ids, start, end)]
        found = missing_inspections(spans, records, start, end, self.local_day(now), self.calendar, tuple(kinds))
        by_id = {p["id"]: p for p in points}
        return [self._missing(m, by_id[m.point_id]) for m in found]

    def month(self, conn: Conn, *, village_id: int | None = None, township_id: int | None = None,
              year: int, month: int, now: datetime) -> PlaceMonth:
        """The month of a village or a township (exactly one of the ids)."""
        if village_id is not None:
            place = repository.village(conn, village_id)
            if place is None:
                raise LedgerNotFoundError(f"no village {village_id}")
            kind, name, township_name = "village", place["name"], place["township"]
            points = repository.points_of(conn, village_id=village_id)
            # A village answers for the caregivers' daily and its own weekly checks.
            kinds: tuple[InspectionKind, ...] = (InspectionKind.DAILY, InspectionKind.WEEKLY)
        else:
            assert township_id is not None
            found = repository.township(conn, township_id)
            if found is None:
                raise LedgerNotFoundError(f"no township {township_id}")
            kind, name, township_name = "township", found["name"], found["name"]
            points = repository.points_of(conn, township_id=township_id)
            kinds = tuple(InspectionKind)
        first, stop = month_bounds(year, month)
        ids = [p["id"] for p in points]
        start_ts, end_ts = self.day_start(first), self.day_start(stop)
        days = [first + timedelta(days=n) for n in range((stop - first).days)]
        wanted = [(p, d, d + timedelta(days=1)) for p in ids for d in days]
        daily = self._evidence(conn, wanted, now)
        alerts: list[dict[str, Any]] | None = None
        timeline: list[dict[str, Any]] = []
        if repository.alerts_available(conn):
            alerts, timeline = repository.alerts_with_timeline(conn, ids, start_ts, end_ts)
        return PlaceMonth(
            place_kind=kind, place_name=name, township=township_name, year=year, month=month,
            timezone=self.timezone, generated_at=now, points=points,
            inspections=self.inspections(conn, ids, first, stop, now),
            missing=self.missing(conn, points, first, stop, now, kinds),
            sensor_alarms=repository.sensor_alarms(conn, ids, start_ts, end_ts) if ids else [],
            daily_evidence=[(w[0], e) for w, e in zip(wanted, daily, strict=True) if e.readings or e.alarms],
            alerts=alerts, alert_timeline=timeline,
            closures=[ClosureOut(**c) for c in repository.closures(conn, ids, first, stop)],
        )

    # ---- assembly -----------------------------------------------------------------------------------

    def _evidence(self, conn: Conn, wanted: Sequence[tuple[str, date, date]], now: datetime) -> list[Evidence]:
        """Evidence for each (point, first, stop), from one round of queries over the whole span."""
        if not wanted:
            return []
        ids = sorted({w[0] for w in wanted})
        start = self.day_start(min(w[1] for w in wanted))
        end = self.day_start(max(w[2] for w in wanted))
        s = self.settings
        readings, coverage = repository.day_summaries(conn, ids, start, end, self.timezone, s.voltage_low_v,
                                                      s.voltage_high_v)
        alarms = repository.sensor_alarms(conn, ids, start, end)
        alerts: list[DayAlerts] | None = None
        if repository.alerts_available(conn):
            alerts = repository.day_alerts(conn, ids, start, end, self.timezone)
        by_point: dict[str, tuple[list[Any], ...]] = defaultdict(lambda: ([], [], [], []))
        sources: tuple[Sequence[Any], ...] = (readings, coverage, alarms, alerts or [])
        for n, rows in enumerate(sources):
            for r in rows:
                by_point[r.point_id][n].append(r)
        out: list[Evidence] = []
        for p, first, stop in wanted:
            r, c, a, al = by_point[p]
            out.append(summarise(p, first, stop, tz=self.tz, now=now, readings=r, coverage=c, alarms=a,
                                 alerts=al if alerts is not None else None))
        return out

    def _assemble(self, conn: Conn, rows: Sequence[dict[str, Any]], now: datetime) -> list[InspectionOut]:
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        items: dict[int, list[ItemOut]] = defaultdict(list)
        for r in repository.items_of(conn, ids):
            items[r["inspection_id"]].append(ItemOut(position=r["position"], area=r["area"], item=r["item"],
                                                     passed=r["passed"], note=r["note"]))
        today = self.local_day(now)
        problems: dict[int, list[ProblemOut]] = defaultdict(list)
        for r in repository.problems_of(conn, ids):
            problems[r["inspection_id"]].append(self._problem(r, today))
        samples: dict[int, list[SampleOut]] = defaultdict(list)
        for r in repository.samples_of(conn, ids):
            samples[r["inspection_id"]].append(self._sample(r))
        kinds = [InspectionKind(r["kind"]) for r in rows]
        wanted = [(r["point_id"], r["period_start"], period_end(k, r["period_start"]))
                  for r, k in zip(rows, kinds, strict=True)]
        fresh = self._evidence(conn, wanted, now)
        out: list[InspectionOut] = []
        for row, kind, (_, first, stop), new in zip(rows, kinds, wanted, fresh, strict=True):
            stored = Evidence.model_validate(row["evidence"]) if row["evidence"] else None
            shown = fuller(stored, new)
            if shown is not stored:
                # Keep the latest complete summary: telemetry chunks are dropped after their retention.
                repository.store_evidence(conn, int(row["id"]), shown.model_dump(mode="json"), now)
            out.append(InspectionOut(
                id=row["id"], point_id=row["point_id"], kind=kind, period_start=first, period_end=stop,
                inspected_at=row["inspected_at"], recorded_at=row["recorded_at"], inspector=row["inspector"],
                inspector_name=row["inspector_name"], inspector_role=row["inspector_role"], note=row["note"],
                items=items[row["id"]], problems=problems[row["id"]], samples=samples[row["id"]], evidence=shown))
        return out

    def _problem(self, r: dict[str, Any], today: date) -> ProblemOut:
        overdue = r["done_at"] is None and r["deadline"] is not None and r["deadline"] < today
        return ProblemOut(id=r["id"], inspection_id=r["inspection_id"], point_id=r["point_id"],
                          item_position=r["item_position"], description=r["description"],
                          rectification=r["rectification"], deadline=r["deadline"], done_at=r["done_at"],
                          done_by=r["done_by"], done_note=r["done_note"], overdue=overdue)

    def _sample(self, r: dict[str, Any]) -> SampleOut:
        kept = (r["disposed_at"] - r["taken_at"]) / HOUR if r["disposed_at"] is not None else None
        return SampleOut(id=r["id"], inspection_id=r["inspection_id"], point_id=r["point_id"], meal=r["meal"],
                         dishes=r["dishes"], taken_at=r["taken_at"], disposed_at=r["disposed_at"],
                         disposed_by=r["disposed_by"], kept_hours=round(kept, 2) if kept is not None else None,
                         kept_long_enough=kept >= self.settings.sample_keep_hours if kept is not None else None)

    def _missing(self, m: Missing, point: dict[str, Any]) -> MissingOut:
        return MissingOut(point_id=m.point_id, point_name=point["name"], village=point["village"],
                          township=point["township"], kind=m.kind, period_start=m.period_start,
                          period_end=m.period_end, responsible_role=m.responsible.value)
