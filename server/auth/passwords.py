"""Password hashing with argon2id (argon2-cffi): hash, verify, and rehash when the parameters change."""

from __future__ import annotations

import contextlib
import logging

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .errors import AuthInputError

log = logging.getLogger(__name__)


class Passwords:
    """argon2id with the configured cost; `verify` never raises on a wrong or malformed hash."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4,
                 min_length: int = 10) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self.min_length = min_length
        # Verified against when the account does not exist, so an unknown name costs as much as a known one.
        self._dummy = self._hasher.hash("yangyi-no-such-account")

    def check_policy(self, password: str, username: str = "") -> None:
        """Raise AuthInputError when the password is too short or merely the user name."""
        if len(password) < self.min_length:
            raise AuthInputError(f"password must have at least {self.min_length} characters")
        if username and password.strip().lower() == username.lower():
            raise AuthInputError("password must not be the user name")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when password matches the stored hash; a missing hash still spends the same time."""
        if stored is None:
            with contextlib.suppress(VerificationError):
                self._hasher.verify(self._dummy, password)
            return False
        try:
            return self._hasher.verify(stored, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            log.warning("stored password hash is malformed or of an unknown kind")
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when the stored hash was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
