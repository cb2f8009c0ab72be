"""Roles, principals and scopes: which townships, villages and meal points a principal may see, as
a pure value; the SQL filter that applies it to tables keyed by point_id; field masking by role.

Scope by role
    bureau_admin, bureau_viewer   the whole county, including points not yet placed in a township
    township_officer              the points whose township is theirs (any village)
    village_officer               the points of their village
    caregiver                     the meal points bound to them
Integration tokens carry a role and binding of their own and are scoped the same way. A point with
no known township is visible county-wide only: unknown places fail closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from psycopg import sql

from server.subsidy.masking import mask_id_number, mask_phone


class Role(StrEnum):
    BUREAU_ADMIN = "bureau_admin"
    BUREAU_VIEWER = "bureau_viewer"
    TOWNSHIP_OFFICER = "township_officer"
    VILLAGE_OFFICER = "village_officer"
    CAREGIVER = "caregiver"


COUNTY_WIDE_ROLES = frozenset({Role.BUREAU_ADMIN, Role.BUREAU_VIEWER})


class PrincipalKind(StrEnum):
    USER = "user"
    TOKEN = "token"  # noqa: S105 - a kind, not a secret


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a signed-in user (web session) or an integration token, with its binding."""

    kind: PrincipalKind
    id: int
    name: str
    role: Role
    township_id: int | None = None
    village_id: int | None = None
    point_ids: frozenset[str] = frozenset()
    display_name: str | None = None
    # Set only for web sessions: the session row's key and the token unsafe requests must echo.
    session_key: bytes | None = field(default=None, repr=False)
    csrf_token: str | None = field(default=None, repr=False)

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"{self.kind.value}:{self.name}" if self.kind is PrincipalKind.USER else f"token:{self.id}"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a meal point sits; None where the registry has no known township or village."""

    point_id: str
    township_id: int | None
    village_id: int | None


@dataclass(frozen=True, slots=True)
class SqlFilter:
    """A WHERE fragment with positional parameters, to compose with psycopg.sql."""

    sql: sql.Composable
    params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Scope:
    """The places a principal may see: the whole county, or unions of townships, villages and points."""

    county: bool = False
    township_ids: frozenset[int] = frozenset()
    village_ids: frozenset[int] = frozenset()
    point_ids: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.county or self.township_ids or self.village_ids or self.point_ids)

    def allows(self, place: Place) -> bool:
        """True when the point at this place is in scope."""
        if self.county or place.point_id in self.point_ids:
            return True
        if place.township_id is not None and place.township_id in self.township_ids:
            return True
        return place.village_id is not None and place.village_id in self.village_ids

    def sql_filter(self, column: str = "point_id") -> SqlFilter:
        """A fragment true for rows whose `column` (a point id, may be qualified: "d.point_id") is in scope."""
        if self.county:
            return SqlFilter(sql.SQL("TRUE"), ())
        col = sql.Identifier(*column.split("."))
        parts: list[sql.Composable] = []
        params: list[Any] = []
        if self.township_ids:
            parts.append(sql.SQL("{} IN (SELECT point_id FROM meal_point_places WHERE township_id = ANY(%s))")
                         .format(col))
            params.append(sorted(self.township_ids))
        if self.village_ids:
            parts.append(sql.SQL("{} IN (SELECT point_id FROM meal_point_places WHERE village_id = ANY(%s))")
                         .format(col))
            params.append(sorted(self.village_ids))
        if self.point_ids:
            parts.append(sql.SQL("{} = ANY(%s)").format(col))
            params.append(sorted(self.point_ids))
        if not parts:
            return SqlFilter(sql.SQL("FALSE"), ())
        return SqlFilter(sql.SQL("(") + sql.SQL(" OR ").join(parts) + sql.SQL(")"), tuple(params))


def scope_for(principal: Principal) -> Scope:
    """The scope a principal's role and binding give it."""
    role = principal.role
    if role in COUNTY_WIDE_ROLES:
        return Scope(county=True)
    if role is Role.TOWNSHIP_OFFICER and principal.township_id is not None:
        return Scope(township_ids=frozenset({principal.township_id}))
    if role is Role.VILLAGE_OFFICER and principal.village_id is not None:
        return Scope(village_ids=frozenset({principal.village_id}))
    if role is Role.CAREGIVER:
        return Scope(point_ids=principal.point_ids)
    return Scope()


class Sensitive(StrEnum):
    """Personal fields that are masked unless the role needs them (个人信息保护法 art. 28)."""

    ID_NUMBER = "id_number"
    PHONE = "phone"
    CATEGORY = "category"


# Who sees which field in clear, and why:
#   bureau_admin      all: signs the settlement, settles disputes, investigates fraud flags
#   bureau_viewer     none: dashboards need counts, not people
#   township_officer  categories: reviews who is subsidised at which rate
#   village_officer   phones and categories: calls elders and families, confirms status on the ground
#   caregiver         phones: calls an elder who did not come, arranges delivery
UNMASKED_BY_ROLE: Mapping[Role, frozenset[Sensitive]] = {
    Role.BUREAU_ADMIN: frozenset(Sensitive),
    Role.BUREAU_VIEWER: frozenset(),
    Role.TOWNSHIP_OFFICER: frozenset({Sensitive.CATEGORY}),
    Role.VILLAGE_OFFICER: frozenset({Sensitive.PHONE, Sensitive.CATEGORY}),
    Role.CAREGIVER: frozenset({Sensitive.PHONE}),
}
MASKED_CATEGORY = "***"


@dataclass(frozen=True, slots=True)
class Masker:
    """Masks sensitive values for one role, with the masking functions of the public notices."""

    unmasked: frozenset[Sensitive]

    def sees(self, kind: Sensitive) -> bool:
        return kind in self.unmasked

    def value(self, kind: Sensitive, value: Any) -> Any:
        """The value as this role may see it; None stays None."""
        if value is None or kind in self.unmasked:
            return value
        if kind is Sensitive.ID_NUMBER:
            return mask_id_number(str(value))
        if kind is Sensitive.PHONE:
            return mask_phone(str(value))
        return MASKED_CATEGORY

    def record(self, row: Mapping[str, Any], fields: Mapping[str, Sensitive]) -> dict[str, Any]:
        """A copy of row with each field named in `fields` masked as its kind requires."""
        out = dict(row)
        for name, kind in fields.items():
            if name in out:
                out[name] = self.value(kind, out[name])
        return out


def masker_for(role: Role, policy: Mapping[Role, frozenset[Sensitive]] = UNMASKED_BY_ROLE) -> Masker:
    """The masker of a role; an unknown role sees nothing in clear."""
    return Masker(policy.get(role, frozenset()))
