"""De-identification for public notices (个人信息保护法; DOMAIN.md "Privacy").

- resident ID numbers keep the first 2 and last 3 characters: 11*************02X [S]
- phone numbers keep the first 3 and last 4 digits: 138****1234 [S]
- addresses only down to the township (乡/镇/街道) [S]
- names keep the first and last character with the middle masked: 张*明, 欧**娜; a two-character
  name keeps its first: 张* [A]
- categories such as 低保 or 失能 are sensitive and never reach a notice: the notice models have no
  field for them, and `scrub` is a last net for free text.
"""

from __future__ import annotations

import re

from firmware_bridge import residentid

MASK = "*"
# A township-level unit ends in 乡, 镇 or 街道 (苏木 in Inner Mongolia); it follows the county-level unit.
_COUNTY_LEVEL = re.compile(r"^.*?(?:自治县|自治旗|县|区|市|旗)")
_TOWNSHIP_LEVEL = re.compile(r"^.*?(?:街道办事处|街道|镇|乡|苏木)")
_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_ID15_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])\d{15}(?![0-9A-Za-z])")
_MOBILE_IN_TEXT = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
_LANDLINE_IN_TEXT = re.compile(r"(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")
SENSITIVE_WORDS: tuple[str, ...] = (
    "特困",
    "三无",
    "低保",
    "低保边缘",
    "失能",
    "半失能",
    "空巢",
    "独居",
    "计生特扶",
    "失独",
    "优抚",
    "重残",
    "残疾",
)


def mask_id_number(number: str) -> str:
    """Keep the first 2 and last 3 characters of an ID number."""
    return residentid.mask(number.strip().upper())


def mask_phone(phone: str) -> str:
    """Keep the first 3 and last 4 digits of a phone number (138****1234); fewer than 8 digits: all masked."""
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) < 8:
        return MASK * len(digits)
    return digits[:3] + MASK * (len(digits) - 7) + digits[-4:]


def mask_name(name: str) -> str:
    """Mask the middle of a name: 张三明 → 张*明, 张三 → 张*, 欧阳娜娜 → 欧**娜."""
    name = name.strip()
    if len(name) <= 1:
        return MASK * len(name)
    if len(name) == 2:
        return name[0] + MASK
    return name[0] + MASK * (len(name) - 2) + name[-1]


def mask_address(address: str, township: str | None = None) -> str:
    """Cut an address after its township; without a recognisable township, return ''."""
    address = address.strip()
    if township:
        at = address.find(township)
        if at >= 0:
            return address[: at + len(township)]
    county = _COUNTY_LEVEL.match(address)
    rest_start = county.end() if county else 0
    found = _TOWNSHIP_LEVEL.match(address[rest_start:])
    if found is None:
        return ""
    return address[: rest_start + found.end()]


def scrub(text: str) -> str:
    """Mask ID numbers and phone numbers found anywhere in free text."""
    text = _ID_IN_TEXT.sub(lambda m: mask_id_number(m.group(0)), text)
    text = _ID15_IN_TEXT.sub(lambda m: m.group(0)[:2] + MASK * 10 + m.group(0)[-3:], text)
    text = _MOBILE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)
    return _LANDLINE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def sensitive_words_in(text: str) -> list[str]:
    """Category words (低保, 失能 …) that must not appear on a public notice."""
    return [w for w in SENSITIVE_WORDS if w in text]
