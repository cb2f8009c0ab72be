"""Masking vectors from DOMAIN.md's privacy rules."""

from __future__ import annotations

import pytest

from server.subsidy.masking import mask_address, mask_id_number, mask_name, mask_phone, scrub, sensitive_words_in


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("11010519491231002X", "11*************02X"),
        ("11010519491231002x", "11*************02X"),
        ("330127195406100014", "33*************014"),
        (" 330127195406100014 ", "33*************014"),
    ],
)
def test_id_numbers_keep_2_and_3(number: str, masked: str) -> None:
    assert mask_id_number(number) == masked
    assert len(mask_id_number(number)) == 18


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812341234", "138****1234"),
        ("138 1234 1234", "138****1234"),
        ("138-1234-1234", "138****1234"),
        ("+86 138 1234 1234", "138****1234"),
        ("0571-88881234", "057*****1234"),
        ("12345", "*****"),
    ],
)
def test_phones_keep_3_and_4(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三明", "张*明"), ("张明", "张*"), ("欧阳娜娜", "欧**娜"), ("李", "*"), ("", ""), (" 王小二 ", "王*二")],
)
def test_names_mask_the_middle(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("address", "township", "masked"),
    [
        ("浙江省杭州市淳安县千岛湖镇青溪村3组12号", None, "浙江省杭州市淳安县千岛湖镇"),
        ("淳安县威坪镇叶家村18号", None, "淳安县威坪镇"),
        ("杭州市西湖区西溪街道文三路100号3幢", None, "杭州市西湖区西溪街道"),
        ("淳安县王阜乡闻家村", None, "淳安县王阜乡"),
        ("青溪村3组12号", "千岛湖镇", ""),
        ("淳安县千岛湖镇青溪村3组12号", "千岛湖镇", "淳安县千岛湖镇"),
        ("杭州市西湖区文三路100号", None, ""),
    ],
)
def test_addresses_stop_at_the_township(address: str, township: str | None, masked: str) -> None:
    assert mask_address(address, township) == masked


def test_scrub_masks_numbers_in_free_text() -> None:
    text = "联系人身份证330127195406100014，电话13812341234，座机0571-88881234，订单号20240601"
    out = scrub(text)
    assert out == "联系人身份证33*************014，电话138****1234，座机057*****1234，订单号20240601"


def test_sensitive_words_are_found() -> None:
    assert sensitive_words_in("张*明（低保）") == ["低保"]
    assert sensitive_words_in("青溪村助餐点") == []
