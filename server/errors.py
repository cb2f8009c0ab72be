"""The server's exception hierarchy: every error the server raises on purpose derives from ServerError."""

from __future__ import annotations


class ServerError(Exception):
    """Base of the server's own errors."""


class ConfigError(ServerError):
    """Settings are missing or invalid."""


class MigrationError(ServerError):
    """A migration file is malformed or failed to apply."""


class NotFoundError(ServerError):
    """A requested entity (meal point, device) does not exist."""


class StorageError(ServerError):
    """The database failed in a way the caller may retry."""
