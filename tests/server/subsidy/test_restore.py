"""A signed snapshot's JSON rebuilds the settlement exactly: same content hash, same lines and totals."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings

from server.subsidy import canonical
from server.subsidy.errors import SnapshotIntegrityError
from server.subsidy.policy import Category
from server.subsidy.restore import settlement_from_canonical, settlement_from_text
from server.subsidy.settlement import settle
from server.subsidy.snapshot import MonthLedger, adjustments, content_hash

from .conftest import County, at, grant
from .months import RandomMonth, months
from .test_settlement_property import BOOKS, JUNE

SIGNED_AT = datetime(2024, 7, 2, 9, 0, tzinfo=UTC)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(month=months(max_taps=150))
def test_restored_settlement_hashes_the_same(month: RandomMonth) -> None:
    result = settle(JUNE, taps=month.taps, bindings=month.bindings, elders=month.elders, points=month.points,
                    policies=BOOKS[0])
    restored = settlement_from_text(canonical.dumps(result.canonical()), content_hash(result))
    assert content_hash(restored) == content_hash(result)
    assert restored.totals == result.totals
    assert [ln.tap.key for ln in restored.lines] == [ln.tap.key for ln in result.lines]
    # A restored snapshot serves adjustments() like the original: nothing changed, nothing to carry.
    signed = MonthLedger(JUNE).sign(restored, by="bureau", at=SIGNED_AT).snapshots[-1]
    assert adjustments(signed, result, JUNE.next()) == ()


def test_a_tampered_snapshot_is_refused(county: County) -> None:
    county.elder("E1", date(1940, 1, 1), categories=(grant(Category.DIBAO),))
    county.tap("EM:E1", at(date(2024, 6, 3), 11))
    result = settle(JUNE, **county.settle_args())
    data = json.loads(canonical.dumps(result.canonical()))
    assert settlement_from_text(json.dumps(data), content_hash(result)).county.amount == result.county.amount
    data["totals"][-1]["amount"] = "999999.00"
    with pytest.raises(SnapshotIntegrityError):
        settlement_from_text(json.dumps(data), content_hash(result))
    with pytest.raises(SnapshotIntegrityError):
        settlement_from_canonical({"month": "2024-06"})
