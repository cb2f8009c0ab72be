"""The village's monthly public notice (公示): meals, cleaning and medical help, donations; de-identified.

Each village posts, by the 10th of the month [S: county plan; `due_day` is a setting], last month's
subsidised meals (助餐) from the settlement, the cleaning (助洁) and medical-help (助医) services staff
recorded, and the donations honour roll. Elders appear with masked names and ID numbers only; no
phone, no address below the township and no category (低保, 失能 …) — the rows have no field for one.
A personal donor appears by masked name unless they agreed to publication; organisations in full;
free text is scrubbed of ID and phone numbers. The HTML is self-contained (inline CSS, no external
assets) and printable.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

import jinja2

from server.subsidy.eligibility import Elder
from server.subsidy.errors import NoticeError
from server.subsidy.masking import mask_id_number, mask_name, scrub
from server.subsidy.records import Month
from server.subsidy.settlement import Level, Settlement

DEFAULT_DUE_DAY = 10
TEMPLATES = Path(__file__).with_name("templates")
ZERO = Decimal("0.00")


class ServiceType(StrEnum):
    CLEANING = "cleaning"  # 助洁
    MEDICAL = "medical"  # 助医


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service staff delivered to an elder, as they recorded it."""

    day: date
    elder_id: str
    village_id: str
    service: ServiceType


class DonationKind(StrEnum):
    MONEY = "money"
    GOODS = "goods"


class DonorKind(StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


@dataclass(frozen=True, slots=True)
class Donation:
    donor: str
    donor_kind: DonorKind
    kind: DonationKind
    day: date
    village_id: str
    amount: Decimal | None = None  # yuan, for money
    goods: str | None = None  # what was given, for goods
    publish_name: bool = False  # a person agreed to be named in full
    anonymous: bool = False  # shown as 爱心人士

    def __post_init__(self) -> None:
        if self.kind is DonationKind.MONEY and (self.amount is None or self.amount <= 0):
            raise NoticeError(f"money donation from {self.donor!r} needs a positive amount")
        if self.kind is DonationKind.GOODS and not (self.goods or "").strip():
            raise NoticeError(f"goods donation from {self.donor!r} needs a description")


@dataclass(frozen=True, slots=True)
class NoticeRow:
    """One elder on the notice, de-identified."""

    name: str
    id_number: str
    meals: int
    subsidy: Decimal
    cleaning: int
    medical: int


@dataclass(frozen=True, slots=True)
class DonationRow:
    donor: str
    kind: DonationKind
    what: str
    day: date


@dataclass(frozen=True, slots=True)
class VillageNotice:
    month: Month
    county: str
    township_name: str
    village_id: str
    village_name: str
    meals: int
    subsidy: Decimal
    diners: int
    cleaning: int
    medical: int
    rows: tuple[NoticeRow, ...]
    donations: tuple[DonationRow, ...]
    drafted_on: date
    due_on: date


def due_date(month: Month, due_day: int = DEFAULT_DUE_DAY) -> date:
    """The day by which the notice for `month` must be posted (the `due_day` of the next month)."""
    nxt = month.next()
    return date(nxt.year, nxt.month, min(due_day, nxt.last_day.day))


class NoticeStatus(StrEnum):
    PENDING = "pending"  # not published, not yet due
    OVERDUE = "overdue"  # not published and past the due date
    PUBLISHED = "published"  # published on or before the due date
    PUBLISHED_LATE = "published_late"


def notice_status(month: Month, published_on: date | None, today: date, due_day: int = DEFAULT_DUE_DAY) -> NoticeStatus:
    """Where a village's notice for `month` stands on `today`."""
    due = due_date(month, due_day)
    if published_on is not None and published_on <= today:
        return NoticeStatus.PUBLISHED if published_on <= due else NoticeStatus.PUBLISHED_LATE
    return NoticeStatus.OVERDUE if today > due else NoticeStatus.PENDING


def is_overdue(month: Month, published_on: date | None, today: date, due_day: int = DEFAULT_DUE_DAY) -> bool:
    """Whether the notice for `month` is unpublished after its due date."""
    return notice_status(month, published_on, today, due_day) is NoticeStatus.OVERDUE


def _donor_label(d: Donation) -> str:
    if d.anonymous:
        return "爱心人士"
    if d.donor_kind is DonorKind.PERSON and not d.publish_name:
        return mask_name(d.donor)
    return scrub(d.donor.strip())


def _money_text(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.01')):,}"


def draft_notice(
    settlement: Settlement,
    village_id: str,
    *,
    elders: Mapping[str, Elder],
    services: Iterable[ServiceRecord] = (),
    donations: Iterable[Donation] = (),
    drafted_on: date,
    county: str = "",
    village_name: str = "",
    township_name: str = "",
    due_day: int = DEFAULT_DUE_DAY,
) -> VillageNotice:
    """Draft the notice of `village_id` for the settlement's month (records outside it are ignored)."""
    month = settlement.month
    try:
        total = settlement.total(Level.VILLAGE, village_id)
    except KeyError:
        total = None
    village_points = {t.unit_id for t in settlement.totals if t.level is Level.POINT and t.village_id == village_id}
    meals: Counter[str] = Counter()
    subsidy: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for ln in settlement.lines:
        if ln.tap.point_id in village_points:
            meals[ln.elder_id] += 1
            subsidy[ln.elder_id] += ln.amount
    done: dict[ServiceType, Counter[str]] = {s: Counter() for s in ServiceType}
    for rec in services:
        if rec.village_id == village_id and rec.day in month:
            done[rec.service][rec.elder_id] += 1
    people = set(meals) | set(done[ServiceType.CLEANING]) | set(done[ServiceType.MEDICAL])
    missing = sorted(p for p in people if p not in elders)
    if missing:
        raise NoticeError(f"notice for {village_id}: unknown elders {missing[:5]}")
    rows = [
        NoticeRow(
            name=mask_name(elders[p].name),
            id_number=mask_id_number(elders[p].id_number),
            meals=meals[p],
            subsidy=subsidy[p],
            cleaning=done[ServiceType.CLEANING][p],
            medical=done[ServiceType.MEDICAL][p],
        )
        for p in people
    ]
    # Ordered by the masked ID so the order reveals nothing more than the row itself.
    rows.sort(key=lambda r: (r.id_number, r.name, -r.meals))
    given = sorted(
        (d for d in donations if d.village_id == village_id and d.day in month),
        key=lambda d: (d.day, d.donor),
    )
    donation_rows = tuple(
        DonationRow(
            donor=_donor_label(d),
            kind=d.kind,
            what=f"¥{_money_text(d.amount)}" if d.kind is DonationKind.MONEY and d.amount else scrub(d.goods or ""),
            day=d.day,
        )
        for d in given
    )
    township = settlement.total(Level.TOWNSHIP, total.township_id) if total and total.township_id else None
    return VillageNotice(
        month=month,
        county=county,
        township_name=township_name or (township.name if township else ""),
        village_id=village_id,
        village_name=village_name or (total.name if total else village_id),
        meals=total.meals if total else 0,
        subsidy=total.amount if total else ZERO,
        diners=len(meals),
        cleaning=sum(done[ServiceType.CLEANING].values()),
        medical=sum(done[ServiceType.MEDICAL].values()),
        rows=tuple(rows),
        donations=donation_rows,
        drafted_on=drafted_on,
        due_on=due_date(month, due_day),
    )


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["money"] = _money_text
_ENV.filters["zh_date"] = lambda d: f"{d.year}年{d.month}月{d.day}日"

_UNMASKED_ID = re.compile(r"\d{17}[\dXx]|\d{15}")
_UNMASKED_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def render_html(notice: VillageNotice) -> str:
    """Render the printable HTML notice; refuse if an unmasked ID or phone number slipped in."""
    html = _ENV.get_template("notice.html").render(n=notice, DonationKind=DonationKind)
    if _UNMASKED_ID.search(html) or _UNMASKED_PHONE.search(html):
        raise NoticeError(f"notice for {notice.village_id} would show an unmasked ID or phone number")
    return html
