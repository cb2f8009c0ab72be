"""HTTP shapes of elders, their categories and their cards (strict at the boundary)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from firmware_bridge import cardid, residentid
from firmware_bridge.cardid import CardFormat, CardIdSettings
from firmware_bridge.contract.topics import ID_PATTERN
from firmware_bridge.errors import CardIdError, ResidentIdError
from server.subsidy.policy import Category

ElderId = Annotated[str, Field(pattern=ID_PATTERN)]
Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 -]{4,19}$")]


class ElderStatus(StrEnum):
    ACTIVE = "active"
    MOVED = "moved"
    DECEASED = "deceased"


class CardState(StrEnum):
    ACTIVE = "active"
    LOST = "lost"
    REPLACED = "replaced"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


def _check_id_number(value: str) -> str:
    try:
        return residentid.parse(value, today=date.today()).number
    except ResidentIdError as exc:
        raise ValueError(f"resident ID number: {exc}") from exc


class CardIn(_In):
    """A card as a reader or the card's print shows it; canonical ids (EM:…, UID:…) are accepted as is."""

    card: str = Field(min_length=1, max_length=64)
    format: Annotated[CardFormat | None, Field(strict=False)] = Field(
        default=None, description="How `card` is printed; omit for a canonical id")
    reversed: bool = False
    em_high: int = Field(default=0, ge=0, le=0xFFFF)
    at: Annotated[AwareDatetime | None, Field(strict=False)] = Field(
        default=None, description="When the binding starts; now when absent")
    note: str | None = Field(default=None, max_length=200)

    def canonical(self) -> str:
        """The canonical card id; raise ValueError when it does not parse (resident IDs are implicit)."""
        text = self.card.strip()
        try:
            if self.format is None:
                if text.startswith(cardid.EM_PREFIX):
                    return cardid.normalise(text[len(cardid.EM_PREFIX):], CardIdSettings(CardFormat.EM_HEX))
                if text.startswith(cardid.UID_PREFIX):
                    return cardid.normalise(text[len(cardid.UID_PREFIX):], CardIdSettings(CardFormat.UID_HEX))
                raise ValueError("give `format` (em_hex, em_dec, em_w26, uid_hex, uid_dec) or a canonical id")
            if self.format is CardFormat.RESIDENT_ID:
                raise ValueError("resident ID cards need no binding: the elder's ID number is their card")
            return cardid.normalise(text, CardIdSettings(self.format, self.reversed, self.em_high))
        except CardIdError as exc:
            raise ValueError(str(exc)) from exc


class CategoryIn(_In):
    category: Annotated[Category, Field(strict=False)]
    evidence: str = Field(min_length=1, max_length=200, description="证明材料: document number or description")
    valid_from: Annotated[date, Field(strict=False)]
    valid_to: Annotated[date | None, Field(strict=False)] = None

    @model_validator(mode="after")
    def _ordered(self) -> CategoryIn:
        if not self.evidence.strip():
            raise ValueError("evidence must not be blank")
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


class CategoryEnd(_In):
    valid_to: Annotated[date, Field(strict=False)]


class ElderCreate(_In):
    id: ElderId | None = Field(default=None, description="Own id (e.g. the bureau's); server-made when absent")
    name: str = Field(min_length=1, max_length=64)
    id_number: str = Field(description="18-character resident ID number (GB 11643 check character)")
    phone: Phone | None = None
    address: str | None = Field(default=None, max_length=200)
    hukou_local: bool
    resident_since: Annotated[date | None, Field(strict=False)] = Field(
        default=None, description="Non-local hukou: living in the county since (long-term resident)")
    village_id: int | None = Field(default=None, description="Defaults to the meal point's village")
    note: str | None = Field(default=None, max_length=500)
    categories: list[CategoryIn] = Field(default_factory=list, max_length=20)
    card: CardIn | None = Field(default=None, description="A card to bind at once")

    _id_number = field_validator("id_number")(_check_id_number)

    @model_validator(mode="after")
    def _residence(self) -> ElderCreate:
        if not self.name.strip():
            raise ValueError("name must not be blank")
        if self.hukou_local and self.resident_since is not None:
            raise ValueError("resident_since is only for non-local hukou")
        return self


class ElderUpdate(_In):
    """Fields to change; absent fields stay as they are (null clears the optional ones)."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    id_number: str | None = None
    phone: Phone | None = None
    address: str | None = Field(default=None, max_length=200)
    hukou_local: bool | None = None
    resident_since: Annotated[date | None, Field(strict=False)] = None
    status: Annotated[ElderStatus | None, Field(strict=False)] = None
    status_date: Annotated[date | None, Field(strict=False)] = None
    village_id: int | None = None
    home_point_id: Annotated[str | None, Field(pattern=ID_PATTERN)] = None
    note: str | None = Field(default=None, max_length=500)

    @field_validator("id_number")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        return None if value is None else _check_id_number(value)

    @model_validator(mode="after")
    def _status(self) -> ElderUpdate:
        if self.status is not None and self.status is not ElderStatus.ACTIVE and self.status_date is None:
            raise ValueError(f"status {self.status} needs status_date")
        if self.status is ElderStatus.ACTIVE and self.status_date is not None:
            raise ValueError("an active elder has no status_date")
        if "name" in self.model_fields_set and (self.name is None or not self.name.strip()):
            raise ValueError("name must not be blank")
        return self


class CardEvent(_In):
    at: Annotated[AwareDatetime | None, Field(strict=False)] = None
    note: str | None = Field(default=None, max_length=200)


class CategoryOut(_Out):
    id: int
    category: str  # "***" when the role may not see categories
    evidence: str | None
    valid_from: date | None
    valid_to: date | None


class CardOut(_Out):
    card_id: str
    state: CardState
    state_since: datetime | None
    bound_from: datetime
    bound_to: datetime | None
    note: str | None


class ElderOut(_Out):
    id: str
    name: str
    id_number: str
    birth_date: date | None  # only for roles that see ID numbers
    age: int
    sex: str
    phone: str | None
    address: str | None
    hukou_local: bool
    resident_since: date | None
    status: ElderStatus
    status_date: date | None
    village_id: int | None
    home_point_id: str | None
    note: str | None
    categories: list[CategoryOut]
    cards: list[CardOut]
    created_at: datetime
    updated_at: datetime


class ChangeOut(_Out):
    """What a write changed, and whether the rosters it touched reached the broker."""

    elder: ElderOut
    rosters: dict[str, int] = Field(description="point id → roster version built for it")
    rosters_published: bool = Field(description="False when the broker could not be reached: run "
                                                "`yangyi-registry publish-rosters`")


class UnknownCardOut(_Out):
    point_id: str
    card_id: str
    taps: int
    first_seen: datetime
    last_seen: datetime
    devices: list[str]
