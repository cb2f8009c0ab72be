"""Random months for property tests (hypothesis), in ids the database accepts too.

A month has random elders (ages around the 60 and 70 boundaries, birthdays inside the month,
categories starting and ending mid-month, non-locals with and without long residence, moves and
deaths), lost and replaced cards, resident ID cards tapped directly, unknown cards and points,
repeats (double taps), deliveries, taps outside the windows, and the policy change of 15 June.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from hypothesis import strategies as st

from firmware_bridge.contract.messages import DinerKind
from server.subsidy.eligibility import CategoryGrant, Elder, ElderStatus
from server.subsidy.policy import Category
from server.subsidy.records import CardBinding, CardState, PointPlace, Tap
from server.subsidy.repository import ID_CARD_BOUND_FROM

from .conftest import TZ, id_number

FIRST = date(2024, 6, 1)
HOURS = [9, 10, 11, 12, 13, 14, 16, 17, 18, 19]


@dataclass
class RandomMonth:
    taps: list[Tap]
    bindings: list[CardBinding]
    elders: list[Elder]
    points: list[PointPlace]


def card(prefix: str, n: int) -> str:
    """A canonical EM4100 card id unique to this month's prefix (6 hex digits)."""
    return f"EM:{prefix}{n:04X}"


@st.composite
def months(draw: st.DrawFn, prefix: str = "A00000", max_taps: int = 300) -> RandomMonth:
    """Draw one month; `prefix` (6 hex digits) keeps point, elder and card ids apart from other months."""
    points = [
        PointPlace(f"p{prefix}-1", "V1", "T1", "青溪助餐点", "青溪村", "千岛湖镇"),
        PointPlace(f"p{prefix}-2", "V1", "T1", "青溪二组助餐点", "青溪村", "千岛湖镇"),
        PointPlace(f"p{prefix}-3", "V2", "T1", "桥西助餐点", "桥西村", "千岛湖镇"),
        PointPlace(f"p{prefix}-4", "V3", "T2", "文昌助餐点", "文昌社区", "文昌镇"),
    ]
    elders: list[Elder] = []
    bindings: list[CardBinding] = []
    n_cards = 0
    for i in range(draw(st.integers(1, 12))):
        age_on_first = draw(st.sampled_from([55, 59, 60, 64, 69, 69, 70, 75, 90]))
        born = date(2024 - age_on_first, 6, 1) - timedelta(days=draw(st.integers(0, 364)))
        grants = []
        for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
            start = FIRST + timedelta(days=draw(st.integers(-40, 25)))
            end = None if draw(st.booleans()) else start + timedelta(days=draw(st.integers(0, 40)))
            grants.append(CategoryGrant(draw(st.sampled_from(list(Category))), start, "证明", end))
        status, status_date = ElderStatus.ACTIVE, None
        if draw(st.integers(0, 99)) < 15:
            status = draw(st.sampled_from([ElderStatus.MOVED, ElderStatus.DECEASED]))
            status_date = FIRST + timedelta(days=draw(st.integers(0, 29)))
        hukou_local = draw(st.integers(0, 99)) < 80
        since = None
        if not hukou_local and draw(st.integers(0, 99)) < 70:
            since = date(2022, 6, 1) + timedelta(days=draw(st.integers(-30, 30)))
        eid = f"E{prefix}{i:02d}"
        elders.append(Elder(eid, "王小明", id_number(born, i + 1), hukou_local, since, tuple(grants), status,
                            status_date))
        bound = datetime(2020, 1, 1, tzinfo=TZ)
        kind = draw(st.sampled_from(["plain", "plain", "plain", "plain", "lost", "replaced", "id_only"]))
        if kind == "id_only":
            continue  # taps with the resident ID card only
        first_card = card(prefix, n_cards)
        n_cards += 1
        if kind == "plain":
            bindings.append(CardBinding(first_card, eid, bound))
            continue
        when = datetime.combine(FIRST + timedelta(days=draw(st.integers(0, 28))), time(draw(st.integers(0, 23))), TZ)
        state = CardState.LOST if kind == "lost" else CardState.REPLACED
        bindings.append(CardBinding(first_card, eid, bound, state=state, state_since=when))
        bindings.append(CardBinding(card(prefix, n_cards), eid, when + timedelta(days=1)))
        n_cards += 1
    # Everyone's resident ID card is their own, at any time (as the repository binds it).
    bindings.extend(CardBinding("ID:" + e.id_number, e.elder_id, ID_CARD_BOUND_FROM) for e in elders)
    cards = [b.card_id for b in bindings] + [card(prefix, 0xFFF)]
    taps: list[Tap] = []
    seq = 0
    for _ in range(draw(st.integers(0, max_taps))):
        day = FIRST + timedelta(days=draw(st.integers(0, 29)))
        moment = datetime.combine(day, time(draw(st.sampled_from(HOURS)), draw(st.integers(0, 59)),
                                            draw(st.integers(0, 59))), TZ)
        rare = draw(st.integers(0, 99))
        point = f"p{prefix}-9" if rare < 3 else points[draw(st.integers(0, 3))].point_id
        kind = DinerKind.DELIVERY if draw(st.integers(0, 9)) == 0 else DinerKind.TAP
        seq += 1
        taps.append(Tap(point, draw(st.sampled_from(["r1", "r2"])), seq, moment, draw(st.sampled_from(cards)), kind))
        if draw(st.integers(0, 9)) == 0:  # a double tap
            seq += 1
            taps.append(Tap(point, "r1", seq, moment + timedelta(seconds=20), taps[-1].card_id, kind))
    return RandomMonth(taps, bindings, elders, points)
