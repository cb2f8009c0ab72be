"""HTTP shapes of alerts: alerts, timeline, attempts, actions and contacts (strict at the boundary)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .escalation import Role
from .lifecycle import Alert

CHANNEL_NAMES = ("wecom", "dingtalk", "webhook", "sms", "inapp")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AlertOut(_Out):
    id: str
    point_id: str
    device_id: str
    condition: str
    hazard: str
    severity: str
    peak_severity: str
    state: str
    source: str
    active: bool
    opened_at: datetime
    last_seen: datetime
    count: int
    last_value: float | None
    unit: str | None
    threshold: float | None
    message: str
    cleared_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledged_via: str | None
    confirmed_by: str | None
    confirmed_at: datetime | None
    rectification_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    previous_id: str | None
    corroborated_at: datetime | None = Field(
        default=None, description="An edge alarm: when the server's own threshold rule first saw it too")
    needs_on_site_confirmation: bool
    version: int

    @classmethod
    def of(cls, a: Alert, version: int, needs_confirmation: bool) -> AlertOut:
        return cls(
            id=a.id, point_id=a.key.point, device_id=a.key.device, condition=a.key.condition, hazard=a.hazard.value,
            severity=a.severity.value, peak_severity=a.peak_severity.value, state=a.state.value, source=a.source,
            active=a.active, opened_at=a.opened_at, last_seen=a.last_seen, count=a.count, last_value=a.last_value,
            unit=a.unit, threshold=a.threshold, message=a.message, cleared_at=a.cleared_at,
            acknowledged_by=a.ack.by if a.ack else None, acknowledged_at=a.ack.at if a.ack else None,
            acknowledged_via=a.ack.channel if a.ack else None,
            confirmed_by=a.confirmation.by if a.confirmation else None,
            confirmed_at=a.confirmation.at if a.confirmation else None,
            rectification_note=a.confirmation.note if a.confirmation else None,
            resolved_at=a.resolved_at, resolved_by=a.resolved_by, previous_id=a.previous_id,
            corroborated_at=a.corroborated_at, needs_on_site_confirmation=needs_confirmation, version=version,
        )


class TimelineOut(_Out):
    time: datetime
    kind: str
    actor: str
    channel: str | None
    detail: dict[str, Any]


class AttemptOut(_Out):
    time: datetime
    person_id: str
    role: str
    channel: str
    address: str
    kind: str
    round: int
    attempt: int
    ok: bool
    status: int | None
    error: str | None


class AlertDetail(AlertOut):
    timeline: list[TimelineOut]
    notifications: list[AttemptOut]


class AckIn(_In):
    note: str | None = Field(default=None, max_length=500)


class ResolveIn(_In):
    """Gas and electric alarms need on_site=true and a rectification note (整改说明)."""

    on_site: bool = False
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _note_on_site(self) -> ResolveIn:
        if self.on_site and not (self.note or "").strip():
            raise ValueError("an on-site confirmation needs a rectification note")
        return self


class ActionOut(_Out):
    alert: AlertOut
    events: list[str]
    command_id: str | None


class EndpointIn(_In):
    channel: str = Field(pattern=r"^(wecom|dingtalk|webhook|sms|inapp)$")
    address: str = Field(min_length=1, max_length=500)


class ContactIn(_In):
    name: str = Field(min_length=1, max_length=64)
    role: Role
    township_id: int | None = None
    village_id: int | None = None
    point_ids: list[str] = Field(default_factory=list, max_length=500)
    user_id: int | None = None
    mobile: str | None = Field(default=None, pattern=r"^\+?[0-9]{6,20}$")
    endpoints: list[EndpointIn] = Field(default_factory=list, max_length=10)
    quiet_hours: bool = True
    active: bool = True

    @model_validator(mode="after")
    def _binding(self) -> ContactIn:
        if self.role == Role.CAREGIVER and (self.township_id or self.village_id or not self.point_ids):
            raise ValueError("a caregiver is bound to meal points (point_ids), not to a village or township")
        if self.role == Role.VILLAGE_OFFICER and (self.village_id is None or self.township_id or self.point_ids):
            raise ValueError("a village safety officer is bound to one village (village_id)")
        if self.role == Role.TOWNSHIP_LEADER and (self.township_id is None or self.village_id or self.point_ids):
            raise ValueError("a township leader is bound to one township (township_id)")
        return self


class ContactPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    point_ids: list[str] | None = Field(default=None, max_length=500)
    user_id: int | None = None
    mobile: str | None = Field(default=None, pattern=r"^\+?[0-9]{6,20}$")
    endpoints: list[EndpointIn] | None = Field(default=None, max_length=10)
    quiet_hours: bool | None = None
    active: bool | None = None


class ContactOut(_Out):
    id: int
    name: str
    role: str
    township_id: int | None
    village_id: int | None
    point_ids: list[str]
    user_id: int | None
    mobile: str | None
    endpoints: list[dict[str, str]]
    quiet_hours: bool
    active: bool
    created_at: datetime
    updated_at: datetime
