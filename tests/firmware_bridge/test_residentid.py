"""GB 11643 resident ID numbers: check character vectors, birth date, sex, masking."""

from __future__ import annotations

from datetime import date

import pytest

from firmware_bridge.errors import CodecError, ResidentIdError
from firmware_bridge.residentid import Sex, check_char, is_valid, mask, parse

# The GB 11643-1999 example (check 'X') and other numbers whose check characters were computed
# by hand from the weights: 440524188001010014 (S = 195, 195 mod 11 = 8 → "10X98765432"[8] = '4').
VALID = ["11010519491231002X", "440524188001010014", "110101194001010039"]  # S = 80, 80 mod 11 = 3 → "9"


@pytest.mark.parametrize("number", VALID)
def test_valid_numbers(number: str) -> None:
    assert is_valid(number)
    assert check_char(number[:17]) == number[17]


def test_check_char_hand_computed() -> None:
    digits = "44052418800101001"
    total = sum(int(c) * w for c, w in zip(digits, (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2),
                                            strict=True))
    assert total == 195 and total % 11 == 8
    assert check_char(digits) == "4"


def test_x_check_and_lower_case_x() -> None:
    assert check_char("11010519491231002") == "X"
    assert parse("11010519491231002x").number == "11010519491231002X"


@pytest.mark.parametrize(
    "number",
    [
        "110105194912310021",  # wrong check (should be X)
        "440524188001010015",  # wrong check digit
        "11010519491231002",  # 17 characters
        "1101051949123100200",  # 19 characters
        "11010519491331002X",  # month 13 (its check character is wrong too)
        "ABCDEFGHIJKLMNOPQR",
    ],
)
def test_invalid_numbers(number: str) -> None:
    assert not is_valid(number)
    with pytest.raises(ResidentIdError):
        parse(number)


def test_bad_date_with_right_check_char() -> None:
    first17 = "11010519490230001"  # 30 February
    with pytest.raises(ResidentIdError, match="birth date"):
        parse(first17 + check_char(first17))


def test_future_birth_date_rejected_when_today_given() -> None:
    first17 = "11010520300101001"
    number = first17 + check_char(first17)
    assert parse(number).birth_date == date(2030, 1, 1)
    with pytest.raises(ResidentIdError):
        parse(number, today=date(2026, 6, 1))


def test_parts_birth_sex_age() -> None:
    rid = parse("11010519491231002X")
    assert rid.region == "110105"
    assert rid.birth_date == date(1949, 12, 31)
    assert rid.sex is Sex.FEMALE  # 17th digit 2
    assert parse("440524188001010014").sex is Sex.MALE  # 17th digit 1
    assert rid.age_on(date(2026, 12, 30)) == 76
    assert rid.age_on(date(2026, 12, 31)) == 77


def test_error_is_part_of_the_codec_hierarchy() -> None:
    assert issubclass(ResidentIdError, CodecError) and issubclass(ResidentIdError, ValueError)


def test_mask_keeps_first_two_and_last_three() -> None:
    assert mask("11010519491231002X") == "11*************02X"
    assert mask("1234") == "****"
