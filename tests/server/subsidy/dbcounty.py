"""A small county committed to the session database for API and job tests, with ids unique to the test.

Two townships, three villages, four points; elders of several categories with cards (one lost mid-
month), an ID-card diner, a non-local, and a month of lunch taps with a few repeats and an unknown
card. The month is chosen by the caller and must be one no other test writes taps into.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import psycopg

from firmware_bridge.contract.messages import DinerKind
from server.subsidy.eligibility import Elder
from server.subsidy.policy import Category
from server.subsidy.records import CardBinding, CardState, Month, PointPlace, Tap

from .conftest import TZ, grant, id_number
from .dbdata import insert_month


@dataclass
class DbCounty:
    tag: str
    month: Month
    points: list[PointPlace]
    elders: list[Elder]
    bindings: list[CardBinding]
    taps: list[Tap]
    township_ids: dict[str, int] = field(default_factory=dict)
    village_ids: dict[str, int] = field(default_factory=dict)

    def point(self, n: int) -> str:
        return self.points[n - 1].point_id


def build(month: Month, seed: int = 7) -> DbCounty:
    tag = uuid.uuid4().hex[:6].upper()
    region = f"33{random.Random(tag).randint(1000, 9999)}"
    points = [
        PointPlace(f"p{tag}-1", "", "", "青溪助餐点", f"青溪村{tag}", f"千岛湖镇{tag}"),
        PointPlace(f"p{tag}-2", "", "", "青溪二组助餐点", f"青溪村{tag}", f"千岛湖镇{tag}"),
        PointPlace(f"p{tag}-3", "", "", "桥西助餐点", f"桥西村{tag}", f"千岛湖镇{tag}"),
        PointPlace(f"p{tag}-4", "", "", "文昌助餐点", f"文昌社区{tag}", f"文昌镇{tag}"),
    ]
    first = month.first_day
    y = first.year
    specs: list[tuple[int, tuple[Any, ...], bool, date | None]] = [
        (75, (), True, None),
        (82, (grant(Category.DIBAO),), True, None),
        (66, (grant(Category.TEKUN),), True, None),  # special group under 70
        (64, (), True, None),  # too young, no category: not eligible
        (78, (), False, date(y - 5, 1, 1)),  # long-term resident
        (90, (grant(Category.EMPTY_NEST),), True, None),
        (71, (), True, None),
        (73, (grant(Category.DISABLED),), True, None),
    ]
    elders: list[Elder] = []
    bindings: list[CardBinding] = []
    for i, (age, grants, local, since) in enumerate(specs):
        born = date(y - age, 1, 15)
        e = Elder(f"E{tag}{i:02d}", ["张三明", "李四", "王五芳", "赵六", "钱七", "孙八妹", "周九", "吴十"][i],
                  id_number(born, i + 1, region), local, since, grants, phone="13812341234",
                  address="某县某镇某村")
        elders.append(e)
        if i == 6:
            continue  # taps with the resident ID card
        bound = datetime(y - 1, 1, 1, tzinfo=TZ)
        if i == 7:
            lost = datetime.combine(first + timedelta(days=9), time(15), TZ)
            bindings.append(CardBinding(f"EM:{tag}{i:04X}", e.elder_id, bound, state=CardState.LOST,
                                        state_since=lost))
            bindings.append(CardBinding(f"EM:{tag}{0x100 + i:04X}", e.elder_id, lost + timedelta(hours=1)))
        else:
            bindings.append(CardBinding(f"EM:{tag}{i:04X}", e.elder_id, bound))
    rng = random.Random(seed)
    taps: list[Tap] = []
    seq = 0
    for day in month.days()[:20]:
        for i, e in enumerate(elders):
            if rng.random() < 0.25:
                continue
            if i == 6:
                card = "ID:" + e.id_number
            elif i == 7:
                card = f"EM:{tag}{i:04X}" if day.day <= 10 else f"EM:{tag}{0x100 + i:04X}"
            else:
                card = f"EM:{tag}{i:04X}"
            point = points[i % 4].point_id
            moment = datetime.combine(day, time(11, rng.randint(0, 59)), TZ)
            seq += 1
            taps.append(Tap(point, "r1", seq, moment, card))
            if rng.random() < 0.1:
                seq += 1
                taps.append(Tap(point, "r1", seq, moment + timedelta(seconds=30), card))
        seq += 1
        taps.append(Tap(points[0].point_id, "r1", seq, datetime.combine(day, time(12), TZ), f"EM:{tag}FFFF"))
    taps.append(Tap(points[1].point_id, "r2", 1, datetime.combine(first, time(20), TZ), f"EM:{tag}0000"))
    taps.append(Tap(points[2].point_id, "r2", 2, datetime.combine(first + timedelta(days=2), time(11), TZ),
                    f"EM:{tag}0001", DinerKind.DELIVERY))
    return DbCounty(tag, month, points, elders, bindings, taps)


def commit(dsn: str, county: DbCounty) -> DbCounty:
    """Write the county into the database, commit, and return it with real place ids and places filled in."""
    with psycopg.connect(dsn) as conn:
        insert_month(conn, county.points, county.elders, county.bindings, county.taps)
        rows = conn.execute(
            "SELECT p.id, t.id, t.name, v.id, v.name FROM meal_points p"
            " JOIN meal_point_places pp ON pp.point_id = p.id JOIN townships t ON t.id = pp.township_id"
            " JOIN villages v ON v.id = pp.village_id WHERE p.id = ANY(%s)",
            ([p.point_id for p in county.points],),
        ).fetchall()
        placed = {r[0]: r for r in rows}
        for e in county.elders:
            home = county.points[county.elders.index(e) % 4].point_id
            conn.execute("UPDATE elders SET village_id = %s, home_point_id = %s WHERE id = %s",
                         (placed[home][3], home, e.elder_id))
        conn.commit()
    county.township_ids = {r[2]: r[1] for r in placed.values()}
    county.village_ids = {r[4]: r[3] for r in placed.values()}
    county.points = [PointPlace(p.point_id, str(placed[p.point_id][3]), str(placed[p.point_id][1]), p.point_name,
                                p.village_name, p.township_name) for p in county.points]
    return county
