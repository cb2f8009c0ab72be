"""The ledger package's exceptions; all derive from server.errors.ServerError."""

from __future__ import annotations

from server.errors import NotFoundError, ServerError


class LedgerError(ServerError):
    """Base of the ledger's own errors."""


class LedgerNotFoundError(LedgerError, NotFoundError):
    """No such inspection, problem, sample or place (or it is outside the caller's scope)."""


class InspectionRefusedError(LedgerError, ValueError):
    """The record breaks a ledger rule (wrong role for the kind, time out of bounds, items missing)."""


class ForbiddenKindError(InspectionRefusedError):
    """The caller's role does not carry out inspections of this kind."""


class AlreadyDoneError(LedgerError):
    """The problem is already rectified or the sample already disposed of."""
