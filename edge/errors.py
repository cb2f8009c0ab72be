"""The edge package's exception hierarchy: one base, one subclass per concern."""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the edge agent raises on purpose."""


class ConfigError(EdgeError):
    """The agent's configuration is invalid; `errors` holds one "key.path: message" line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class OutboxError(EdgeError):
    """The outbox cannot store or return events."""


class OutboxCorruptError(OutboxError):
    """The outbox file exists but is not a readable outbox; it is left untouched for an operator."""


class EventRejected(OutboxError):
    """An event body does not validate against contract v1; nothing was stored."""
