"""The village notice: counts, de-identification, printable HTML without personal data, due by the 10th."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from server.subsidy.errors import NoticeError
from server.subsidy.masking import SENSITIVE_WORDS
from server.subsidy.notice import (
    Donation,
    DonationKind,
    DonorKind,
    NoticeStatus,
    ServiceRecord,
    ServiceType,
    VillageNotice,
    draft_notice,
    due_date,
    is_overdue,
    notice_status,
    render_html,
)
from server.subsidy.policy import Category
from server.subsidy.settlement import Month, settle

from .conftest import County, at, grant

JUNE = Month(2024, 6)


def village_notice(county: County) -> tuple[VillageNotice, County]:
    county.elder("E1", date(1940, 1, 1), name="张三明", phone="13812341234", categories=(grant(Category.DIBAO),))
    county.elder(
        "E2",
        date(1944, 2, 2),
        card="EM:E2",
        name="欧阳娜娜",
        phone="13998765432",
        categories=(grant(Category.DISABLED),),
    )
    county.elder("E3", date(1950, 3, 3), card="EM:E3", name="李明", phone="13700001111")
    county.elder("E4", date(1950, 3, 3), card="EM:E4", name="赵钱孙")  # eats in another village
    for d in (3, 4, 5):
        county.tap("EM:E1", at(date(2024, 6, d), 11), point="P1")
        county.tap("EM:E2", at(date(2024, 6, d), 11), point="P2")
        county.tap("EM:E4", at(date(2024, 6, d), 11), point="P3")
    services = [
        ServiceRecord(date(2024, 6, 7), "E3", "V1", ServiceType.CLEANING),
        ServiceRecord(date(2024, 6, 8), "E3", "V1", ServiceType.CLEANING),
        ServiceRecord(date(2024, 6, 9), "E1", "V1", ServiceType.MEDICAL),
        ServiceRecord(date(2024, 7, 1), "E1", "V1", ServiceType.MEDICAL),  # next month
        ServiceRecord(date(2024, 6, 9), "E4", "V2", ServiceType.MEDICAL),  # another village
    ]
    donations = [
        Donation(
            "千岛湖爱心超市",
            DonorKind.ORGANISATION,
            DonationKind.GOODS,
            date(2024, 6, 12),
            "V1",
            goods="大米10袋，联系电话13611112222",
        ),
        Donation("王建国", DonorKind.PERSON, DonationKind.MONEY, date(2024, 6, 2), "V1", amount=Decimal("500")),
        Donation(
            "陈美丽",
            DonorKind.PERSON,
            DonationKind.MONEY,
            date(2024, 6, 20),
            "V1",
            amount=Decimal("1200.5"),
            publish_name=True,
        ),
        Donation("某某", DonorKind.PERSON, DonationKind.GOODS, date(2024, 6, 25), "V1", goods="食用油", anonymous=True),
        Donation("别村", DonorKind.ORGANISATION, DonationKind.MONEY, date(2024, 6, 25), "V2", amount=Decimal("1")),
    ]
    result = settle(JUNE, **county.settle_args())
    elders = {e.elder_id: e for e in county.elders}
    notice = draft_notice(
        result,
        "V1",
        elders=elders,
        services=services,
        donations=donations,
        drafted_on=date(2024, 7, 1),
        county="测试县",
    )
    return notice, county


def test_notice_counts(county: County) -> None:
    n, _ = village_notice(county)
    assert (n.village_name, n.township_name) == ("青溪村", "千岛湖镇")
    assert (n.meals, n.diners, n.cleaning, n.medical) == (6, 2, 2, 1)
    assert n.subsidy == Decimal("36.00")  # 低保 6 × 3 + 失能 6 × 3
    rows = {r.name: (r.meals, r.subsidy, r.cleaning, r.medical) for r in n.rows}
    assert rows == {
        "张*明": (3, Decimal("18.00"), 0, 1),
        "欧**娜": (3, Decimal("18.00"), 0, 0),
        "李*": (0, Decimal("0.00"), 2, 0),
    }
    assert all(re.fullmatch(r"33\*{13}\d{2}[\dX]", r.id_number) for r in n.rows)
    assert [(d.donor, d.what) for d in n.donations] == [
        ("王*国", "¥500.00"),
        ("千岛湖爱心超市", "大米10袋，联系电话136****2222"),
        ("陈美丽", "¥1,200.50"),
        ("爱心人士", "食用油"),
    ]
    assert n.due_on == date(2024, 7, 10)


def test_rendered_notice_has_no_personal_data(county: County) -> None:
    n, c = village_notice(county)
    html = render_html(n)
    assert html.startswith("<!DOCTYPE html>")
    assert "青溪村居家养老服务公示" in html and "2024年6月" in html
    for e in c.elders:
        assert e.id_number not in html
        assert e.id_number[6:14] not in html  # not even the birth date
        assert e.phone is None or e.phone not in html
        assert e.name not in html
        assert e.address is not None and "青溪村3组" not in html
    assert "13611112222" not in html
    for word in SENSITIVE_WORDS:
        assert word not in html, word
    for needle in ("http://", "https://", "<script", "<link", "src=", "url("):
        assert needle not in html
    for masked in ("张*明", "欧**娜", "李*", "王*国", "爱心人士"):
        assert masked in html


def test_render_refuses_a_leaked_number(county: County) -> None:
    n, _ = village_notice(county)
    leaked = replace(n, village_name="青溪村 13812341234")
    with pytest.raises(NoticeError, match="unmasked"):
        render_html(leaked)
    escaped = replace(n, village_name="<b>青溪村</b>")
    assert "&lt;b&gt;" in render_html(escaped)


def test_a_village_with_nothing_to_show(county: County) -> None:
    result = settle(JUNE, **county.settle_args())
    n = draft_notice(result, "V9", elders={}, drafted_on=date(2024, 7, 1), village_name="空村", township_name="某镇")
    assert (n.meals, n.cleaning, n.medical, n.rows, n.donations) == (0, 0, 0, (), ())
    html = render_html(n)
    assert "本月无服务记录" in html and "本月暂无捐赠" in html


def test_unknown_elders_in_records_are_refused(county: County) -> None:
    result = settle(JUNE, **county.settle_args())
    with pytest.raises(NoticeError, match="unknown elders"):
        draft_notice(
            result,
            "V1",
            elders={},
            services=[ServiceRecord(date(2024, 6, 3), "GHOST", "V1", ServiceType.CLEANING)],
            drafted_on=date(2024, 7, 1),
        )


def test_bad_donations_are_refused() -> None:
    with pytest.raises(NoticeError):
        Donation("x", DonorKind.PERSON, DonationKind.MONEY, date(2024, 6, 1), "V1")
    with pytest.raises(NoticeError):
        Donation("x", DonorKind.PERSON, DonationKind.GOODS, date(2024, 6, 1), "V1", goods=" ")


@pytest.mark.parametrize(
    ("published_on", "today", "status"),
    [
        (None, date(2024, 7, 1), NoticeStatus.PENDING),
        (None, date(2024, 7, 10), NoticeStatus.PENDING),
        (None, date(2024, 7, 11), NoticeStatus.OVERDUE),
        (date(2024, 7, 10), date(2024, 7, 20), NoticeStatus.PUBLISHED),
        (date(2024, 7, 11), date(2024, 7, 20), NoticeStatus.PUBLISHED_LATE),
        (date(2024, 7, 15), date(2024, 7, 12), NoticeStatus.OVERDUE),  # scheduled, not yet posted
    ],
)
def test_due_by_the_tenth(published_on: date | None, today: date, status: NoticeStatus) -> None:
    assert notice_status(JUNE, published_on, today) is status
    assert is_overdue(JUNE, published_on, today) is (status is NoticeStatus.OVERDUE)


def test_due_dates() -> None:
    assert due_date(Month(2024, 12)) == date(2025, 1, 10)
    assert due_date(Month(2024, 1), due_day=31) == date(2024, 2, 29)
