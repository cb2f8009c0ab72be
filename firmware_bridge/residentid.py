"""Resident ID numbers (居民身份证号码, GB 11643-1999): check character, birth date, sex, masking.

Layout of the 18 characters::

    positions 1–6    address code (county of first registration)
    positions 7–14   birth date YYYYMMDD
    positions 15–17  sequence code; position 17 odd = male, even = female
    position 18      check character, ISO 7064 MOD 11-2:
                     S = Σ a_i · W_i over the first 17 digits, W = 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2,
                     check = "10X98765432"[S mod 11]  (the value 10 is written 'X')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from firmware_bridge.errors import ResidentIdError

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
LENGTH = 18
EARLIEST_BIRTH = date(1870, 1, 1)


class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"


@dataclass(frozen=True, slots=True)
class ResidentId:
    number: str
    region: str
    birth_date: date
    sex: Sex

    def age_on(self, day: date) -> int:
        """Age in whole years on `day` (a 29 February birthday counts on 1 March in common years)."""
        before = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - int(before)


def check_char(first17: str) -> str:
    """Return the check character for the first 17 digits."""
    if len(first17) != LENGTH - 1 or not first17.isascii() or not first17.isdigit():
        raise ResidentIdError(f"need 17 digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def parse(number: str, *, today: date | None = None) -> ResidentId:
    """Validate an 18-character number (lower-case 'x' accepted) and return its parts."""
    number = number.strip().upper()
    if len(number) != LENGTH:
        raise ResidentIdError(f"resident ID must have {LENGTH} characters, got {len(number)}")
    expected = check_char(number[:17])
    if number[17] != expected:
        raise ResidentIdError(f"bad check character {number[17]!r} (expected {expected!r})")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise ResidentIdError(f"bad birth date {number[6:14]!r}") from exc
    if born < EARLIEST_BIRTH or (today is not None and born > today):
        raise ResidentIdError(f"implausible birth date {born.isoformat()}")
    sex = Sex.MALE if int(number[16]) % 2 else Sex.FEMALE
    return ResidentId(number=number, region=number[:6], birth_date=born, sex=sex)


def is_valid(number: str) -> bool:
    """Whether `number` is a well-formed resident ID number."""
    try:
        parse(number)
    except ResidentIdError:
        return False
    return True


def mask(number: str) -> str:
    """De-identify for notices and logs: keep the first 2 and last 3 characters."""
    if len(number) <= 5:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 5) + number[-3:]
