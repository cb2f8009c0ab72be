"""The subsidy package's exception hierarchy, rooted in the server's ServerError."""

from __future__ import annotations

from server.errors import ServerError


class SubsidyError(ServerError):
    """Base of every error the subsidy package raises on purpose."""


class PolicyError(SubsidyError):
    """A policy file or policy object is malformed or inconsistent."""


class SettlementInputError(SubsidyError):
    """Settlement inputs contradict each other (duplicate taps, unknown elders, taps outside the month)."""


class ReconciliationError(SubsidyError):
    """A settlement's lines, exclusions and totals do not add up."""


class SnapshotError(SubsidyError):
    """A sign-off, reopening or adjustment was asked for in the wrong state or with bad arguments."""


class SnapshotIntegrityError(SnapshotError):
    """A signed snapshot's content no longer matches its hash."""


class NoticeError(SubsidyError):
    """A public notice cannot be drafted or rendered from the given records."""
