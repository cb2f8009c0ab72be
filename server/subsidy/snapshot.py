"""Bureau sign-off: immutable month snapshots with a content hash, reopening with an audit trail, adjustments.

The content hash is the sha256 of the canonical JSON (sorted keys, no spaces, UTF-8, Decimals as
strings, instants in UTC) of the settlement: month, policy versions with their full content and
hash, the identity of the inputs, every line, exclusion, adjustment, total and anomaly flag. Who
signed and when sit beside the hash, in the snapshot and the audit record, not inside it, so the
same figures always hash the same.

A month's ledger moves OPEN → SIGNED → (REOPENED → SIGNED)…; a signed month is locked: signing
again needs a reopening first, and a reopening needs a written reason. Corrections found after
sign-off are not made by editing the signed month but paid (or recovered) in a later month as
adjustment lines: `adjustments(signed, recomputed, into)` compares the two tap by tap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from server.subsidy import canonical
from server.subsidy.errors import SnapshotError, SnapshotIntegrityError
from server.subsidy.records import AdjustmentLine, Exclusion, MealLine, Month, TapKey
from server.subsidy.settlement import Settlement

ZERO = Decimal("0.00")
MIN_REASON_CHARS = 5


def content_hash(settlement: Settlement) -> str:
    """The sha256 (hex) of the settlement's canonical JSON."""
    return canonical.sha256_hex(settlement.canonical())


@dataclass(frozen=True, slots=True)
class SignedSnapshot:
    """A signed month: the settlement as signed, its hash, who signed and when."""

    month: Month
    revision: int
    settlement: Settlement
    content_hash: str
    signed_by: str
    signed_at: datetime

    def verify(self) -> None:
        """Raise SnapshotIntegrityError unless the content still matches the hash."""
        actual = content_hash(self.settlement)
        if actual != self.content_hash:
            raise SnapshotIntegrityError(
                f"snapshot {self.month} revision {self.revision}: content hash {actual} != signed {self.content_hash}"
            )


class AuditAction(StrEnum):
    SIGN = "sign"
    REOPEN = "reopen"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    month: Month
    action: AuditAction
    revision: int
    content_hash: str
    by: str
    at: datetime
    reason: str = ""


class LedgerState(StrEnum):
    OPEN = "open"  # never signed
    SIGNED = "signed"  # locked
    REOPENED = "reopened"  # unlocked with a reason; the last signed snapshot stays in the history


@dataclass(frozen=True, slots=True)
class MonthLedger:
    """The sign-off history of one month; each operation returns a new ledger."""

    month: Month
    state: LedgerState = LedgerState.OPEN
    snapshots: tuple[SignedSnapshot, ...] = ()
    audit: tuple[AuditRecord, ...] = ()

    @property
    def current(self) -> SignedSnapshot | None:
        """The snapshot in force: the last signed one while the month is signed."""
        return self.snapshots[-1] if self.state is LedgerState.SIGNED else None

    def sign(self, settlement: Settlement, *, by: str, at: datetime) -> MonthLedger:
        """Lock the month on `settlement`."""
        if self.state is LedgerState.SIGNED:
            raise SnapshotError(f"{self.month} is signed; reopen it with a reason first")
        if settlement.month != self.month:
            raise SnapshotError(f"settlement is for {settlement.month}, ledger for {self.month}")
        if not by.strip():
            raise SnapshotError("a sign-off needs the signer")
        _aware(at)
        settlement.check()
        digest = content_hash(settlement)
        revision = len(self.snapshots) + 1
        snap = SignedSnapshot(self.month, revision, settlement, digest, by, at)
        record = AuditRecord(self.month, AuditAction.SIGN, revision, digest, by, at)
        return MonthLedger(self.month, LedgerState.SIGNED, (*self.snapshots, snap), (*self.audit, record))

    def reopen(self, *, by: str, at: datetime, reason: str) -> MonthLedger:
        """Unlock a signed month; the reason and the hash of what was unlocked go to the audit trail."""
        current = self.current
        if current is None:
            raise SnapshotError(f"{self.month} is not signed; nothing to reopen")
        if len(reason.strip()) < MIN_REASON_CHARS:
            raise SnapshotError(f"reopening needs a reason of at least {MIN_REASON_CHARS} characters")
        if not by.strip():
            raise SnapshotError("a reopening needs the person who asks for it")
        _aware(at)
        current.verify()
        record = AuditRecord(self.month, AuditAction.REOPEN, current.revision, current.content_hash, by, at, reason)
        return MonthLedger(self.month, LedgerState.REOPENED, self.snapshots, (*self.audit, record))


def _aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise SnapshotError("audit times must be timezone-aware")


def adjustments(signed: SignedSnapshot, recomputed: Settlement, into: Month) -> tuple[AdjustmentLine, ...]:
    """Differences between a signed month and its recomputation, as adjustment lines payable in `into`."""
    signed.verify()
    if recomputed.month != signed.month:
        raise SnapshotError(f"recomputation is for {recomputed.month}, snapshot for {signed.month}")
    if into <= signed.month:
        raise SnapshotError(f"adjustments for {signed.month} go into a later month, not {into}")
    before: dict[TapKey, MealLine] = {ln.tap.key: ln for ln in signed.settlement.lines}
    after: dict[TapKey, MealLine] = {ln.tap.key: ln for ln in recomputed.lines}
    excluded: dict[TapKey, Exclusion] = {ex.tap.key: ex for ex in recomputed.exclusions}
    was_excluded: dict[TapKey, Exclusion] = {ex.tap.key: ex for ex in signed.settlement.exclusions}
    out: list[AdjustmentLine] = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[0], k[3], k[1], k[2])):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None:
            if (old.amount, old.category) == (new.amount, new.category):
                continue
            note = f"category {old.category} → {new.category}" if old.category != new.category else "amount changed"
        elif new is not None:
            prior = was_excluded.get(key)
            note = f"now subsidised (was {prior.reason})" if prior is not None else "late tap, subsidised"
        else:
            assert old is not None
            ex = excluded.get(key)
            note = f"withdrawn: {ex.reason}" if ex is not None else "withdrawn: tap no longer in the inputs"
        ref = new or old
        assert ref is not None
        out.append(
            AdjustmentLine(
                origin_month=signed.month,
                point_id=key[0],
                tap_key=key,
                elder_id=ref.elder_id,
                day=ref.day,
                meal=ref.meal,
                category_before=old.category if old else None,
                category_after=new.category if new else None,
                amount_before=old.amount if old else ZERO,
                amount_after=new.amount if new else ZERO,
                note=note,
            )
        )
    return tuple(out)
