"""The auth package's exceptions; all derive from server.errors.ServerError."""

from __future__ import annotations

from server.errors import ServerError


class AuthError(ServerError):
    """Base of the auth package's own errors."""


class InvalidCredentialsError(AuthError):
    """Unknown user, wrong password or disabled account (deliberately indistinguishable)."""


class LoginThrottledError(AuthError):
    """Too many failed logins for the account or the address within the window."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class AuthInputError(AuthError, ValueError):
    """A user, token or place request is inconsistent (role without its binding, unknown place …)."""


class AuthConflictError(AuthError):
    """The name is already taken, or the change would leave the county without an administrator."""


class AuthNotFoundError(AuthError, KeyError):
    """No such user, token or place."""
