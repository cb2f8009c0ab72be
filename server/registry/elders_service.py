"""Elders, categories and card bindings: the rules of each change, and which rosters it touches.

Card lifecycle (each step keeps the rows, so a tap is always attributed as it was at its time):
    bind      a new binding, active from `at`; refused while the elder has an active card (replace it)
              or while the card is bound to anyone (release it first)
    lost      挂失: the active card becomes lost from `at`; its taps from then on earn nothing
    replace   补办/换卡: the active card (if any) becomes replaced from `at`, the new card is bound at `at`
    release   the card goes back to stock: its binding ends at `at`; it may then be bound to someone else
Every write rebuilds the rosters of the meal points the elder is on, before and after the change, in
the same transaction; the router publishes them after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from firmware_bridge import residentid
from server.auth.scopes import Masker, Sensitive
from server.errors import NotFoundError, ServerError
from server.subsidy.masking import mask_address, mask_name

from . import elders_repository as repo
from . import roster
from .elders_schemas import (
    CardEvent,
    CardIn,
    CardOut,
    CategoryEnd,
    CategoryIn,
    CategoryOut,
    ElderCreate,
    ElderOut,
    ElderUpdate,
)


class RegistryError(ServerError):
    """A registry change that cannot be made as asked."""


class ConflictError(RegistryError):
    """The change contradicts the current state (a second active card, a card bound elsewhere)."""


class InvalidChangeError(RegistryError):
    """The change is malformed for this elder (dates out of order, unknown village)."""


@dataclass(frozen=True, slots=True)
class Change:
    elder_id: str
    rosters: dict[str, roster.Built]


class EldersService:
    """Registry writes and reads; `now` and the time zone are injected (rosters are built for the local day)."""

    def __init__(self, timezone: str = "Asia/Shanghai") -> None:
        self.timezone = timezone

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, conn: psycopg.Connection[Any], elder_id: str, point_id: str | None = None,
            lock: bool = False) -> dict[str, Any]:
        row = repo.get_elder(conn, elder_id, point_id, lock=lock)
        if row is None:
            where = f" at meal point {point_id!r}" if point_id else ""
            raise NotFoundError(f"no elder {elder_id!r}{where}")
        return row

    def out(self, conn: psycopg.Connection[Any], rows: list[dict[str, Any]], masker: Masker,
            today: date) -> list[ElderOut]:
        """Rows as the caller's role may see them (ID numbers, phones, addresses, categories masked)."""
        ids = [r["id"] for r in rows]
        cats: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for c in repo.categories(conn, ids):
            cats[c["elder_id"]].append(c)
        cards: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for c in repo.cards(conn, ids):
            cards[c["elder_id"]].append(c)
        return [self._one(r, cats[r["id"]], cards[r["id"]], masker, today) for r in rows]

    @staticmethod
    def _one(row: dict[str, Any], cats: list[dict[str, Any]], cards: list[dict[str, Any]], masker: Masker,
             today: date) -> ElderOut:
        sees_id = masker.sees(Sensitive.ID_NUMBER)
        sees_phone = masker.sees(Sensitive.PHONE)
        sees_cat = masker.sees(Sensitive.CATEGORY)
        born: date = row["birth_date"]
        age = today.year - born.year - int((today.month, today.day) < (born.month, born.day))
        address = row["address"]
        if address is not None and not sees_phone:
            address = mask_address(address) or None
        return ElderOut(
            id=row["id"],
            # A role that sees no personal field at all (bureau viewer) sees names masked too.
            name=row["name"] if masker.unmasked else mask_name(row["name"]),
            id_number=masker.value(Sensitive.ID_NUMBER, row["id_number"]),
            birth_date=born if sees_id else None, age=age, sex=row["sex"],
            phone=masker.value(Sensitive.PHONE, row["phone"]), address=address,
            hukou_local=row["hukou_local"], resident_since=row["resident_since"], status=row["status"],
            status_date=row["status_date"], village_id=row["village_id"], home_point_id=row["home_point_id"],
            note=row["note"] if sees_id or sees_phone else None,
            categories=[CategoryOut(id=c["id"], category=c["category"] if sees_cat else masker.value(
                Sensitive.CATEGORY, c["category"]), evidence=c["evidence"] if sees_cat else None,
                valid_from=c["valid_from"] if sees_cat else None, valid_to=c["valid_to"] if sees_cat else None)
                for c in cats],
            cards=[CardOut(card_id=c["card_id"], state=c["state"], state_since=c["state_since"],
                           bound_from=c["bound_from"], bound_to=c["bound_to"], note=c["note"]) for c in cards],
            created_at=row["created_at"], updated_at=row["updated_at"],
        )

    # -- writes ---------------------------------------------------------------------------------------
    def _today(self, now: datetime) -> date:
        return now.astimezone(ZoneInfo(self.timezone)).date()

    def _rosters(self, conn: psycopg.Connection[Any], points: set[str], now: datetime) -> dict[str, roster.Built]:
        return roster.rebuild(conn, points, now, self.timezone)

    def create(self, conn: psycopg.Connection[Any], spec: ElderCreate, point_id: str | None,
               now: datetime) -> Change:
        """Register an elder (home point = point_id when given; village defaults to the point's)."""
        village_id = spec.village_id
        if point_id is not None:
            exists, point_village = repo.point_village(conn, point_id)
            if not exists:
                raise NotFoundError(f"no meal point {point_id!r}")
            if village_id is None:
                village_id = point_village
        if village_id is not None and not repo.village_exists(conn, village_id):
            raise InvalidChangeError(f"no village {village_id}")
        parsed = residentid.parse(spec.id_number)
        fields: dict[str, Any] = {
            "name": spec.name.strip(), "id_number": parsed.number, "birth_date": parsed.birth_date,
            "sex": parsed.sex.value, "phone": spec.phone, "address": spec.address, "hukou_local": spec.hukou_local,
            "resident_since": spec.resident_since, "village_id": village_id, "home_point_id": point_id,
            "note": spec.note, "created_at": now, "updated_at": now,
        }
        if spec.id is not None:
            fields["id"] = spec.id
        if conn.execute("SELECT 1 FROM elders WHERE id_number = %s", (parsed.number,)).fetchone():
            raise ConflictError(f"an elder with ID number {residentid.mask(parsed.number)} is already registered")
        if spec.id is not None and repo.get_elder(conn, spec.id) is not None:
            raise ConflictError(f"elder id {spec.id!r} is taken")
        elder_id = repo.insert_elder(conn, fields)
        for c in spec.categories:
            repo.insert_category(conn, elder_id, c.category.value, c.evidence.strip(), c.valid_from, c.valid_to)
        if spec.card is not None:
            self._bind(conn, elder_id, self._canonical(spec.card), spec.card.at or now, spec.card.note)
        return Change(elder_id, self._rosters(conn, repo.points_of_elders(conn, [elder_id]), now))

    def update(self, conn: psycopg.Connection[Any], elder_id: str, spec: ElderUpdate, point_id: str | None,
               now: datetime) -> Change:
        row = self.get(conn, elder_id, point_id, lock=True)
        before = repo.points_of_elders(conn, [elder_id])
        fields = {k: getattr(spec, k) for k in spec.model_fields_set}
        for required in ("name", "hukou_local", "status"):
            if required in fields and fields[required] is None:
                raise InvalidChangeError(f"{required} cannot be cleared")
        if "name" in fields:
            fields["name"] = fields["name"].strip()
        if fields.get("id_number") is not None:
            parsed = residentid.parse(fields["id_number"])
            fields.update(id_number=parsed.number, birth_date=parsed.birth_date, sex=parsed.sex.value)
            other = conn.execute("SELECT id FROM elders WHERE id_number = %s AND id <> %s",
                                 (parsed.number, elder_id)).fetchone()
            if other is not None:
                raise ConflictError(f"ID number {residentid.mask(parsed.number)} belongs to elder {other[0]}")
        elif "id_number" in fields:
            raise InvalidChangeError("id_number cannot be cleared")
        if "status" in fields:
            fields["status"] = fields["status"].value
            fields.setdefault("status_date", None)
        elif "status_date" in fields:
            raise InvalidChangeError("status_date changes only with status")
        hukou = fields.get("hukou_local", row["hukou_local"])
        if hukou and fields.get("hukou_local") and "resident_since" not in fields:
            fields["resident_since"] = None  # becoming local ends the long-term-resident date
        since = fields["resident_since"] if "resident_since" in fields else row["resident_since"]
        if hukou and since is not None:
            raise InvalidChangeError("resident_since is only for non-local hukou")
        if fields.get("village_id") is not None and not repo.village_exists(conn, fields["village_id"]):
            raise InvalidChangeError(f"no village {fields['village_id']}")
        if fields.get("home_point_id") is not None and not repo.point_village(conn, fields["home_point_id"])[0]:
            raise InvalidChangeError(f"no meal point {fields['home_point_id']!r}")
        repo.update_elder(conn, elder_id, fields, now)
        after = repo.points_of_elders(conn, [elder_id])
        return Change(elder_id, self._rosters(conn, before | after, now))

    def add_category(self, conn: psycopg.Connection[Any], elder_id: str, spec: CategoryIn, point_id: str | None,
                     now: datetime) -> Change:
        self.get(conn, elder_id, point_id, lock=True)
        repo.insert_category(conn, elder_id, spec.category.value, spec.evidence.strip(), spec.valid_from,
                             spec.valid_to)
        return Change(elder_id, self._rosters(conn, repo.points_of_elders(conn, [elder_id]), now))

    def end_category(self, conn: psycopg.Connection[Any], elder_id: str, category_id: int, spec: CategoryEnd,
                     point_id: str | None, now: datetime) -> Change:
        self.get(conn, elder_id, point_id, lock=True)
        found = next((c for c in repo.categories(conn, [elder_id]) if c["id"] == category_id), None)
        if found is None:
            raise NotFoundError(f"elder {elder_id!r} has no category {category_id}")
        if spec.valid_to < found["valid_from"]:
            raise InvalidChangeError("valid_to is before the category's valid_from")
        repo.end_category(conn, elder_id, category_id, spec.valid_to)
        return Change(elder_id, self._rosters(conn, repo.points_of_elders(conn, [elder_id]), now))

    def _canonical(self, spec: CardIn) -> str:
        try:
            return spec.canonical()
        except ValueError as exc:
            raise InvalidChangeError(str(exc)) from exc

    def _bind(self, conn: psycopg.Connection[Any], elder_id: str, card_id: str, at: datetime,
              note: str | None) -> None:
        bound = repo.open_binding(conn, card_id)
        if bound is not None:
            whose = "this elder" if bound["elder_id"] == elder_id else f"elder {bound['elder_id']}"
            raise ConflictError(f"card {card_id} is still bound to {whose} ({bound['state']}); release it first")
        ended = repo.last_binding_end(conn, card_id)
        if ended is not None and at < ended:
            raise InvalidChangeError(f"card {card_id} was bound until {ended.isoformat()}; bind it after that")
        repo.insert_card(conn, card_id, elder_id, at, note)

    def bind_card(self, conn: psycopg.Connection[Any], elder_id: str, spec: CardIn, point_id: str | None,
                  now: datetime) -> Change:
        row = self.get(conn, elder_id, point_id, lock=True)
        if row["status"] != "active":
            raise ConflictError(f"elder {elder_id!r} is {row['status']}: no new card")
        card_id = self._canonical(spec)
        active = repo.active_card(conn, elder_id)
        if active is not None:
            raise ConflictError(f"elder {elder_id!r} already has active card {active['card_id']}; replace it")
        self._bind(conn, elder_id, card_id, spec.at or now, spec.note)
        return Change(elder_id, self._rosters(conn, repo.points_of_elders(conn, [elder_id]), now))

    def replace_card(self, conn: psycopg.Connection[Any], elder_id: str, spec: CardIn, point_id: str | None,
                     now: datetime) -> Change:
        row = self.get(conn, elder_id, point_id, lock=True)
        if row["status"] != "active":
            raise ConflictError(f"elder {elder_id!r} is {row['status']}: no new card")
        card_id = self._canonical(spec)
        at = spec.at or now
        active = repo.active_card(conn, elder_id)
        if active is not None:
            if active["card_id"] == card_id:
                raise ConflictError(f"card {card_id} is already the elder's active card")
            if at < active["bound_from"]:
                raise InvalidChangeError("the replacement is dated before the old card was bound")
            repo.set_card_state(conn, active["id"], "replaced", at)
        self._bind(conn, elder_id, card_id, at, spec.note)
        return Change(elder_id, self._rosters(conn, repo.points_of_elders(conn, [elder_id]), now))

    def _elders_open_card(self, conn: psycopg.Connection[Any], elder_id: str, card_id: str) -> dict[str, Any]:
        bound = repo.open_binding(conn, card_id)
        if bound is None or bound["elder_id"] != elder_id:
            raise NotFoundError(f"card {card_id} is not bound to elder {elder_id!r}")
        return bound

    def card_lost(self, conn: psycopg.Connection[Any], elder_id: str, card_id: str, spec: CardEvent,
                  point_id: str | None, now: datetime) -> Change:
        self.get(conn, elder_id, point_id, lock=True)
        bound = self._elders_open_card(conn, elder_id, card_id)
        if bound["state"] != "active":
            raise ConflictError(f"card {card_id} is already {bound['state']}")
        at = spec.at or now
        if at < bound["bound_from"]:
            raise InvalidChangeError("reported lost before it was bound")
        repo.set_card_state(conn, bound["id"], "lost", at)
        return Change(elder_id, self._rosters(conn, repo.points_of_elders(conn, [elder_id]), now))

    def release_card(self, conn: psycopg.Connection[Any], elder_id: str, card_id: str, spec: CardEvent,
                     point_id: str | None, now: datetime) -> Change:
        self.get(conn, elder_id, point_id, lock=True)
        bound = self._elders_open_card(conn, elder_id, card_id)
        at = spec.at or now
        if at <= bound["bound_from"] or (bound["state_since"] is not None and at < bound["state_since"]):
            raise InvalidChangeError("the release is dated before the binding or its state change")
        repo.release_card(conn, bound["id"], at)
        return Change(elder_id, self._rosters(conn, repo.points_of_elders(conn, [elder_id]), now))
