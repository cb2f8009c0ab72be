"""Subsidy use cases over the database: policies, settling a month, sign-off, reopening, corrections.

Sign-off (bureau_admin) signs a stored pure run: the month is recomputed from the database at that
moment and must hash to the run's content hash (the inputs have not moved since the run was
reviewed); the canonical JSON is stored as the snapshot, with a CHECK that its sha256 is the hash.
While a month is signed the database refuses new runs for it and any change to the signed run.
Reopening needs a written reason and leaves a settlement event and an audit entry. Corrections
found after sign-off never touch the signed month: `corrections` compares the signed snapshot with
a recomputation and stores the differences as adjustment lines payable in the next month that is
not signed; settling that month adds them to the amount due.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from server.subsidy import canonical, repository
from server.subsidy.errors import PolicyError, SnapshotError, SubsidyError
from server.subsidy.policy import PolicyBook, parse_policies
from server.subsidy.records import AdjustmentLine, Month, PointPlace
from server.subsidy.restore import settlement_from_text
from server.subsidy.settlement import Settlement, settle
from server.subsidy.snapshot import MIN_REASON_CHARS, SignedSnapshot, adjustments
from server.subsidy.sql import SqlSettlement, settle_sql, settle_sql_parallel

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
Audit = Callable[..., Any]


class NoPolicyError(SubsidyError):
    """No policy version is stored yet."""


class MonthLockedError(SnapshotError):
    """The month is signed: nothing about it may change until it is reopened."""


@dataclass(frozen=True, slots=True)
class PolicyAdded:
    version: str
    status: str  # added | unchanged


def add_policies(conn: Conn, yaml_text: str, *, by: str, at: datetime) -> list[PolicyAdded]:
    """Store the versions of a policy document; a known version must be unchanged (versions are immutable)."""
    book = parse_policies(yaml_text, "policy upload")
    stored = {r["version"]: r for r in repository.policy_rows(conn)}
    starts = {r["effective_from"]: r["version"] for r in stored.values()}
    out: list[PolicyAdded] = []
    for p in book.policies:
        row = stored.get(p.version)
        if row is not None:
            if row["sha256"] != p.content_hash:
                raise PolicyError(f"version {p.version} is stored with other content; add a new version instead")
            out.append(PolicyAdded(p.version, "unchanged"))
            continue
        other = starts.get(p.effective_from)
        if other is not None:
            raise PolicyError(f"version {other} already takes effect on {p.effective_from}")
        repository.insert_policy(conn, p, county=book.county, timezone=book.timezone, source_yaml=yaml_text,
                                 by=by, at=at)
        out.append(PolicyAdded(p.version, "added"))
    # The whole stored set must still make a valid book (ordering, zone).
    if repository.load_book(conn) is None:
        raise PolicyError("no policy stored")
    return out


def book_or_raise(conn: Conn) -> PolicyBook:
    book = repository.load_book(conn)
    if book is None:
        raise NoPolicyError("no subsidy policy is stored yet; add one first")
    return book


@dataclass(frozen=True, slots=True)
class Inputs:
    book: PolicyBook
    points: list[PointPlace]
    adjustments: list[AdjustmentLine]


def compute(conn: Conn, month: Month) -> tuple[Settlement, Inputs]:
    """Settle the month from the database with the pure calculation (nothing stored)."""
    book = book_or_raise(conn)
    points = repository.load_points(conn)
    elders = repository.load_elders(conn)
    bindings = repository.load_bindings(conn, elders)
    taps = repository.load_taps(conn, month, book)
    camera = repository.load_camera_counts(conn, month, book)
    adj = repository.load_adjustments(conn, month)
    result = settle(month, taps=taps, bindings=bindings, elders=elders, points=points, policies=book,
                    camera_counts=camera, adjustments=adj)
    return result, Inputs(book, points, adj)


def _refuse_if_signed(conn: Conn, month: Month) -> dict[str, Any]:
    state = repository.month_state(conn, month)
    if state["state"] == "signed":
        raise MonthLockedError(f"{month} is signed; reopen it with a reason first")
    return state


def settle_month(conn: Conn, month: Month, *, by: str, at: datetime) -> tuple[int, Settlement]:
    """Compute the month with the pure path and store it as a run; return the run id and the result."""
    _refuse_if_signed(conn, month)
    began = _time.perf_counter()
    result, inputs = compute(conn, month)
    result.check()
    digest = canonical.sha256_hex(result.canonical())
    run_id = repository.store_run(conn, result, method="pure", by=by, at=at, seconds=_time.perf_counter() - began,
                                  points=inputs.points, content_hash=digest)
    return run_id, result


def settle_month_sql(conn: Conn, month: Month, *, by: str, at: datetime, dsn: str | None = None,
                     workers: int = 2) -> tuple[int, SqlSettlement]:
    """Compute the month's totals with the SQL path and store them as a run.

    With `dsn`, the month is split by local days over `workers` connections of their own (exact; they
    read committed data), else it is settled on `conn`."""
    _refuse_if_signed(conn, month)
    book = book_or_raise(conn)
    points = repository.load_points(conn)
    adj = repository.load_adjustments(conn, month)
    began = _time.perf_counter()
    if dsn is None:
        result = settle_sql(conn, month, book, points, adj)
    else:
        result = settle_sql_parallel(dsn, month, book, points, adj, workers=workers)
    county = result.county
    run_id = repository.insert_sql_run(
        conn, month, by=by, at=at, seconds=_time.perf_counter() - began, taps=county.taps, meals=county.meals,
        amount=county.amount, adjustments=county.adjustments, excluded=county.excluded_taps, policies=result.policies,
    )
    repository.store_totals(conn, run_id, result.totals)
    return run_id, result


@dataclass(frozen=True, slots=True)
class Signed:
    month: Month
    revision: int
    run_id: int
    content_hash: str


def sign(conn: Conn, month: Month, run_id: int, *, by: str, at: datetime, audit: Audit | None = None) -> Signed:
    """Lock the month on a stored pure run, if the data still settle to exactly that run."""
    state = repository.month_state(conn, month, lock=True)
    if state["state"] == "signed":
        raise MonthLockedError(f"{month} is already signed (revision {state['revision']})")
    run = repository.run_row(conn, run_id)
    if run is None or run["month"] != month.first_day:
        raise SnapshotError(f"run {run_id} is not a run of {month}")
    if run["method"] != "pure" or not run["content_hash"]:
        raise SnapshotError(f"run {run_id} is a {run['method']} run; sign a full (pure) run")
    result, _ = compute(conn, month)
    result.check()
    content = canonical.dumps(result.canonical())
    digest = canonical.sha256_hex(result.canonical())
    if digest != run["content_hash"]:
        raise SnapshotError(f"the data changed since run {run_id} (hash {digest[:12]}… ≠ {run['content_hash'][:12]}…);"
                            " settle the month again and review the new run")
    revision = int(state["revision"]) + 1
    repository.insert_snapshot(conn, month, revision, run_id, content, digest, by, at)
    repository.set_month_state(conn, month, "signed", revision, at)
    repository.insert_event(conn, month, "sign", revision, digest, by, at)
    if audit is not None:
        audit("subsidy.sign", f"month:{month}", revision=revision, run_id=run_id, content_hash=digest)
    logger.info("%s signed by %s: revision %d, run %d, %s", month, by, revision, run_id, digest)
    return Signed(month, revision, run_id, digest)


def reopen(conn: Conn, month: Month, reason: str, *, by: str, at: datetime, audit: Audit | None = None) -> int:
    """Unlock a signed month with a reason; return the revision that was unlocked."""
    if len(reason.strip()) < MIN_REASON_CHARS:
        raise SnapshotError(f"reopening needs a reason of at least {MIN_REASON_CHARS} characters")
    state = repository.month_state(conn, month, lock=True)
    if state["state"] != "signed":
        raise SnapshotError(f"{month} is not signed; nothing to reopen")
    snap = repository.snapshot(conn, month, int(state["revision"]))
    assert snap is not None
    repository.set_month_state(conn, month, "reopened", int(state["revision"]), at)
    repository.insert_event(conn, month, "reopen", int(state["revision"]), snap["content_hash"], by, at, reason.strip())
    if audit is not None:
        audit("subsidy.reopen", f"month:{month}", revision=state["revision"], reason=reason.strip(),
              content_hash=snap["content_hash"])
    return int(state["revision"])


def signed_settlement(conn: Conn, month: Month, revision: int | None = None) -> tuple[dict[str, Any], Settlement]:
    """The stored snapshot row and its settlement, rebuilt and checked against the hash."""
    snap = repository.snapshot(conn, month, revision)
    if snap is None:
        raise SnapshotError(f"{month} has never been signed")
    return snap, settlement_from_text(snap["content"], snap["content_hash"])


def corrections(conn: Conn, month: Month, *, by: str, at: datetime, audit: Audit | None = None
                ) -> tuple[Month, list[AdjustmentLine]]:
    """Differences between the last signed snapshot and today's data, stored as the next open month's adjustments."""
    snap, signed_result = signed_settlement(conn, month)
    recomputed, _ = compute(conn, month)
    into = month.next()
    while repository.month_state(conn, into)["state"] == "signed":
        into = into.next()
    signed = SignedSnapshot(month, int(snap["revision"]), signed_result, snap["content_hash"], snap["signed_by"],
                            snap["signed_at"])
    lines = list(adjustments(signed, recomputed, into))
    added = repository.insert_adjustments(conn, lines, origin_revision=int(snap["revision"]), into=into, by=by, at=at)
    if audit is not None:
        audit("subsidy.corrections", f"month:{month}", into=str(into), lines=len(lines), added=added)
    return into, lines


def month_overview(conn: Conn, month: Month) -> dict[str, Any]:
    state = repository.month_state(conn, month)
    return {
        "month": str(month),
        "state": state["state"],
        "revision": state["revision"],
        "runs": repository.runs_of(conn, month),
        "events": repository.events(conn, month),
    }


def stored_points(conn: Conn) -> Sequence[PointPlace]:
    return repository.load_points(conn)
