"""HTTP shapes of auth: strict bodies in, frozen views out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .scopes import Role

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{1,63}$"
POINT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Binding(_In):
    """A role with the place it is bound to: a township, a village or meal points, as the role needs."""

    role: Role
    township_id: int | None = Field(default=None, ge=1)
    village_id: int | None = Field(default=None, ge=1)
    point_ids: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _point_ids_well_formed(self) -> Binding:
        bad = [p for p in self.point_ids if not re.match(POINT_ID_PATTERN, p)]
        if bad:
            raise ValueError(f"malformed point ids: {bad[:5]}")
        return self


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=1024)


class UserCreate(Binding):
    username: str = Field(pattern=USERNAME_PATTERN)
    display_name: str | None = Field(default=None, max_length=64)
    password: SecretStr = Field(max_length=1024)


class UserUpdate(_In):
    """Fields to change. Changing the role or its binding means giving `role` and the binding it needs."""

    display_name: str | None = Field(default=None, max_length=64)
    disabled: bool | None = None
    password: SecretStr | None = Field(default=None, max_length=1024)
    role: Role | None = None
    township_id: int | None = Field(default=None, ge=1)
    village_id: int | None = Field(default=None, ge=1)
    point_ids: list[str] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _binding_needs_role(self) -> UserUpdate:
        if self.role is None and {"township_id", "village_id", "point_ids"} & self.model_fields_set:
            raise ValueError("give `role` together with township_id, village_id or point_ids")
        return self

    def binding(self) -> Binding | None:
        if self.role is None:
            return None
        return Binding(role=self.role, township_id=self.township_id, village_id=self.village_id,
                       point_ids=self.point_ids or [])


class PasswordChange(_In):
    current_password: SecretStr = Field(max_length=1024)
    new_password: SecretStr = Field(max_length=1024)


class TokenCreate(Binding):
    name: str = Field(min_length=1, max_length=64)
    days: int | None = Field(default=None, ge=1, description="Lifetime; default and maximum are settings")


class TownshipCreate(_In):
    name: str = Field(min_length=1, max_length=64)


class VillageCreate(_In):
    township_id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=64)


class UserOut(_Out):
    id: int
    username: str
    display_name: str | None
    role: Role
    township_id: int | None
    village_id: int | None
    point_ids: list[str]
    disabled: bool
    created_at: datetime
    updated_at: datetime


class TokenOut(_Out):
    id: int
    name: str
    role: Role
    township_id: int | None
    village_id: int | None
    point_ids: list[str]
    created_by: int | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer secret; shown this once, stored only as a hash")


class ScopeOut(_Out):
    county: bool
    township_ids: list[int]
    village_ids: list[int]
    point_ids: list[str]


class MeOut(_Out):
    kind: str
    id: int
    name: str
    display_name: str | None
    role: Role
    township_id: int | None
    village_id: int | None
    point_ids: list[str]
    scope: ScopeOut
    unmasked_fields: list[str]
    csrf_token: str | None = Field(default=None, description="Echo in the CSRF header on unsafe requests")


class LoginOut(MeOut):
    expires_at: datetime


class PointPlaceOut(_Out):
    id: str
    name: str | None


class VillageOut(_Out):
    id: int
    name: str
    points: list[PointPlaceOut]


class TownshipOut(_Out):
    id: int
    name: str
    villages: list[VillageOut]
    points_without_village: list[PointPlaceOut]


class PlacesOut(_Out):
    townships: list[TownshipOut]
    unplaced_points: list[PointPlaceOut] = Field(description="Points with no known township (county-wide only)")


class AuditOut(_Out):
    id: int
    time: datetime
    actor: str
    actor_user_id: int | None
    action: str
    target: str | None
    ip: str | None
    ok: bool
    detail: dict[str, Any]
