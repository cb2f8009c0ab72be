"""Sign-off snapshots: canonical JSON, hash stability and change detection, the ledger, adjustments."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from server.subsidy import canonical
from server.subsidy.anomalies import AnomalyFlag, AnomalyKind
from server.subsidy.eligibility import ElderStatus
from server.subsidy.errors import SnapshotError, SnapshotIntegrityError
from server.subsidy.policy import Category, parse_policies
from server.subsidy.settlement import ExclusionReason, Level, Month, Settlement, settle
from server.subsidy.snapshot import AuditAction, LedgerState, MonthLedger, adjustments, content_hash

from .conftest import POLICY_YAML, TZ, County, at, grant

JUNE = Month(2024, 6)
OLD = date(1940, 5, 5)
SIGNED_AT = datetime(2024, 7, 2, 9, 0, tzinfo=TZ)


def june(county: County) -> Settlement:
    county.elder("E1", OLD, categories=(grant(Category.DIBAO),))
    county.elder("E2", OLD, card="EM:E2")
    county.elder("E3", date(1960, 1, 1), card="EM:E3")
    for d in (3, 4, 17):
        county.tap("EM:E1", at(date(2024, 6, d), 11), point="P1")
        county.tap("EM:E2", at(date(2024, 6, d), 11, 30), point="P4")
    county.tap("EM:E3", at(date(2024, 6, 5), 11), point="P3")
    return settle(JUNE, **county.settle_args())


def test_canonical_json_is_canonical() -> None:
    a = {"b": Decimal("1.50"), "a": [date(2024, 6, 1), datetime(2024, 6, 1, 11, tzinfo=TZ)], "名": "张"}
    assert canonical.dumps(a) == '{"a":["2024-06-01","2024-06-01T03:00:00Z"],"b":"1.50","名":"张"}'
    assert canonical.sha256_hex(a) == hashlib.sha256(canonical.dumps(a).encode()).hexdigest()
    same_instant = {"b": Decimal("1.50"), "a": [date(2024, 6, 1), datetime(2024, 6, 1, 3, tzinfo=UTC)], "名": "张"}
    assert canonical.sha256_hex(same_instant) == canonical.sha256_hex(a)
    records = [{"x": 1}, {"y": "二"}]
    assert canonical.sha256_records(iter(records)) == canonical.sha256_hex(records)
    with pytest.raises(TypeError, match="float"):
        canonical.dumps({"amount": 1.5})
    with pytest.raises(TypeError, match="naive"):
        canonical.dumps({"t": datetime(2024, 6, 1)})


def test_hash_is_stable_across_recomputation_and_input_order(county: County) -> None:
    first = june(county)
    args = county.settle_args()
    rng = random.Random(1)
    for key in ("taps", "bindings", "elders", "points"):
        rng.shuffle(args[key])
    again = settle(JUNE, **args)
    assert content_hash(again) == content_hash(first)
    # The piecewise hash is exactly the sha256 of the whole canonical document.
    whole = canonical.dumps(first.canonical()).encode("utf-8")
    assert content_hash(first) == hashlib.sha256(whole).hexdigest()


def test_hash_changes_with_any_content(county: County) -> None:
    base = june(county)
    digest = content_hash(base)
    line = base.lines[0]
    ex = base.exclusions[0]
    changed = [
        replace(base, lines=(replace(line, amount=line.amount + Decimal("0.01")), *base.lines[1:])),
        replace(base, lines=(replace(line, category=Category.TEKUN), *base.lines[1:])),
        replace(base, exclusions=(replace(ex, reason=ExclusionReason.REPEAT), *base.exclusions[1:])),
        replace(base, inputs=replace(base.inputs, taps_sha256="0" * 64)),
        replace(
            base, policies=(parse_policies(POLICY_YAML.replace('"3.00"', '"3.10"')).policies[0], *base.policies[1:])
        ),
        replace(base, anomalies=(*base.anomalies, AnomalyFlag(AnomalyKind.SPIKE, "P1", date(2024, 6, 30)))),
        replace(base, totals=base.totals[:-1]),
    ]
    digests = {content_hash(c) for c in changed}
    assert digest not in digests and len(digests) == len(changed)


def test_a_late_tap_changes_the_inputs_identity(county: County) -> None:
    base = june(county)
    county.tap("EM:E2", at(date(2024, 6, 20), 11), point="P4")
    assert settle(JUNE, **county.settle_args()).inputs.taps_sha256 != base.inputs.taps_sha256


def test_sign_lock_reopen_and_sign_again(county: County) -> None:
    result = june(county)
    ledger = MonthLedger(JUNE)
    assert ledger.current is None
    signed = ledger.sign(result, by="民政局 王科长", at=SIGNED_AT)
    assert signed.state is LedgerState.SIGNED
    snap = signed.current
    assert snap is not None and snap.revision == 1 and snap.content_hash == content_hash(result)
    snap.verify()
    with pytest.raises(SnapshotError, match="reopen"):
        signed.sign(result, by="民政局 王科长", at=SIGNED_AT)
    with pytest.raises(SnapshotError, match="reason"):
        signed.reopen(by="王科长", at=SIGNED_AT, reason="  ")
    reopened = signed.reopen(by="王科长", at=SIGNED_AT, reason="桥西村补录6月5日刷卡记录")
    assert reopened.state is LedgerState.REOPENED and reopened.current is None
    with pytest.raises(SnapshotError, match="not signed"):
        reopened.reopen(by="王科长", at=SIGNED_AT, reason="再次打开")
    resigned = reopened.sign(result, by="王科长", at=SIGNED_AT)
    assert [(a.action, a.revision) for a in resigned.audit] == [
        (AuditAction.SIGN, 1),
        (AuditAction.REOPEN, 1),
        (AuditAction.SIGN, 2),
    ]
    assert resigned.audit[1].reason == "桥西村补录6月5日刷卡记录"
    assert resigned.audit[1].content_hash == snap.content_hash
    # The first signed snapshot stays in the history, unchanged.
    assert resigned.snapshots[0] is snap


def test_sign_refuses_the_wrong_month_naive_times_and_unreconciled_results(county: County) -> None:
    result = june(county)
    with pytest.raises(SnapshotError, match="ledger for 2024-07"):
        MonthLedger(Month(2024, 7)).sign(result, by="x", at=SIGNED_AT)
    with pytest.raises(SnapshotError, match="aware"):
        MonthLedger(JUNE).sign(result, by="x", at=datetime(2024, 7, 2))
    broken = replace(result, lines=result.lines[1:])
    with pytest.raises(Exception, match="taps placed"):
        MonthLedger(JUNE).sign(broken, by="x", at=SIGNED_AT)


def test_tampering_after_sign_off_is_detected(county: County) -> None:
    snap = MonthLedger(JUNE).sign(june(county), by="王科长", at=SIGNED_AT).current
    assert snap is not None
    line = snap.settlement.lines[0]
    forged = replace(snap, settlement=replace(snap.settlement, lines=(replace(line, amount=Decimal("99.00")),)))
    with pytest.raises(SnapshotIntegrityError):
        forged.verify()
    with pytest.raises(SnapshotIntegrityError):
        adjustments(forged, snap.settlement, Month(2024, 7))


def test_corrections_go_into_the_next_month_as_adjustments(county: County) -> None:
    snap = MonthLedger(JUNE).sign(june(county), by="王科长", at=SIGNED_AT).current
    assert snap is not None
    # After sign-off: a late tap arrives from an offline point, E3's 低保 is registered back-dated,
    # and E2 turns out to have moved away on 17 June.
    county.tap("EM:E2", at(date(2024, 6, 10), 11, 30), point="P4")
    county.elders[2] = replace(county.elders[2], categories=(grant(Category.DIBAO, date(2024, 6, 1)),))
    county.elders[1] = replace(county.elders[1], status=ElderStatus.MOVED, status_date=date(2024, 6, 17))
    recomputed = settle(JUNE, **county.settle_args())
    lines = adjustments(snap, recomputed, Month(2024, 7))
    got = [(a.point_id, a.day, a.amount_before, a.amount_after, a.delta, a.note) for a in lines]
    assert got == [
        (
            "P3",
            date(2024, 6, 5),
            Decimal("0.00"),
            Decimal("6.00"),
            Decimal("6.00"),
            "now subsidised (was not_eligible)",
        ),
        ("P4", date(2024, 6, 10), Decimal("0.00"), Decimal("3.00"), Decimal("3.00"), "late tap, subsidised"),
        ("P4", date(2024, 6, 17), Decimal("4.00"), Decimal("0.00"), Decimal("-4.00"), "withdrawn: elder_moved"),
    ]
    # Unchanged lines produce nothing; the adjustments then flow into July's totals.
    county.taps.clear()
    july = settle(Month(2024, 7), adjustments=lines, **county.settle_args())
    july.check()
    assert july.county.amount == Decimal("0.00")
    assert july.county.adjustments == Decimal("5.00")
    assert july.total(Level.POINT, "P4").amount_due == Decimal("-1.00")
    with pytest.raises(SnapshotError, match="later month"):
        adjustments(snap, recomputed, JUNE)
