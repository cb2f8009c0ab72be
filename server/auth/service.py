"""Auth logic: login and logout, sessions and tokens to principals, users, tokens and places.

Every method takes the connection and the time (`now`) from its caller, so expiry and rate limits
are tested with a fake clock. Methods that must leave a trace even when they fail (a failed or
throttled login) commit before raising; the others leave committing to the caller's transaction,
so a change and its audit entry commit together.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from . import audit, repository
from .errors import (
    AuthConflictError,
    AuthInputError,
    AuthNotFoundError,
    InvalidCredentialsError,
    LoginThrottledError,
)
from .passwords import Passwords
from .ratelimit import SlidingWindow, combine
from .schemas import Binding, TokenCreate, UserCreate, UserUpdate
from .scopes import COUNTY_WIDE_ROLES, Principal, PrincipalKind, Role, Scope
from .settings import AuthSettings

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
TOKEN_PREFIX = "yyt_"  # noqa: S105 - marks our bearer tokens, not a secret
# Write last_seen/last_used at most this often: a dashboard polling every few seconds would
# otherwise turn every read into a write.
TOUCH_INTERVAL = timedelta(seconds=60)


def secret_key(secret: str) -> bytes:
    """The stored form of a session cookie or token secret (SHA-256; both are 256 random bits)."""
    return hashlib.sha256(secret.encode()).digest()


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


@dataclass(frozen=True, slots=True)
class LoginResult:
    principal: Principal
    cookie_value: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewToken:
    token_id: int
    secret: str


def principal_from_user(row: dict[str, Any], session_key: bytes | None = None,
                        csrf_token: str | None = None) -> Principal:
    return Principal(kind=PrincipalKind.USER, id=row["id"], name=row["username"], role=Role(row["role"]),
                     township_id=row["township_id"], village_id=row["village_id"],
                     point_ids=frozenset(row["point_ids"] or ()), display_name=row["display_name"],
                     session_key=session_key, csrf_token=csrf_token)


def principal_from_token(row: dict[str, Any]) -> Principal:
    return Principal(kind=PrincipalKind.TOKEN, id=row["id"], name=row["name"], role=Role(row["role"]),
                     township_id=row["township_id"], village_id=row["village_id"],
                     point_ids=frozenset(row["point_ids"] or ()))


class AuthService:
    def __init__(self, settings: AuthSettings, passwords: Passwords | None = None) -> None:
        self.settings = settings
        self.passwords = passwords or Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                                                settings.argon2_parallelism, settings.password_min_length)
        window = timedelta(seconds=settings.login_window_s)
        self.per_account = SlidingWindow(settings.login_max_per_account, window)
        self.per_ip = SlidingWindow(settings.login_max_per_ip, window)
        self.idle = timedelta(minutes=settings.session_idle_minutes)
        self.max_age = timedelta(hours=settings.session_max_hours)

    # ---- login, sessions, tokens -------------------------------------------------------------------

    def login(self, conn: Conn, username: str, password: str, now: datetime, ip: str | None = None,
              user_agent: str | None = None) -> LoginResult:
        """Check the password under the rate limit; open a server-side session."""
        name = username.strip().lower()
        target = f"user:{name}"
        account_failures, ip_failures = repository.login_failures_since(conn, name, ip, now - self.per_ip.window)
        verdict = combine(self.per_account.check(account_failures, now), self.per_ip.check(ip_failures, now))
        if not verdict.allowed:
            audit.record(conn, actor=audit.ANONYMOUS, action="login.throttled", at=now, target=target, ip=ip,
                         ok=False, detail={"retry_after_s": verdict.retry_after_s})
            conn.commit()
            raise LoginThrottledError(verdict.retry_after_s)
        row = repository.user_by_name(conn, name)
        matched = self.passwords.verify(row["password_hash"] if row else None, password)
        if row is None or not matched or row["disabled"]:
            reason = "unknown_user" if row is None else ("bad_password" if not matched else "disabled")
            repository.insert_login_failure(conn, now, name, ip)
            audit.record(conn, actor=audit.ANONYMOUS, action="login.failed", at=now, target=target, ip=ip,
                         ok=False, detail={"reason": reason})
            conn.commit()
            raise InvalidCredentialsError("wrong user name or password")
        detail: dict[str, Any] = {}
        if self.passwords.needs_rehash(row["password_hash"]):
            repository.update_user(conn, row["id"], now, password_hash=self.passwords.hash(password))
            detail["rehashed"] = True
        repository.clear_account_failures(conn, name)
        cookie_value = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        key = secret_key(cookie_value)
        expires_at = now + self.max_age
        repository.insert_session(conn, key=key, user_id=row["id"], csrf_token=csrf_token, at=now,
                                  expires_at=expires_at, ip=ip, user_agent=(user_agent or "")[:256] or None)
        principal = principal_from_user(row, key, csrf_token)
        audit.record(conn, actor=principal, action="login", at=now, target=target, ip=ip, detail=detail)
        conn.commit()
        return LoginResult(principal, cookie_value, expires_at)

    def session_expiry(self, last_seen_at: datetime, expires_at: datetime) -> datetime:
        """When a session seen at last_seen_at ends: idle timeout or absolute end, whichever is first."""
        return min(last_seen_at + self.idle, expires_at)

    def principal_from_session(self, conn: Conn, cookie_value: str, now: datetime) -> Principal | None:
        """The user of a live session, or None (unknown, revoked, idle too long, past its end, disabled)."""
        key = secret_key(cookie_value)
        row = repository.session_with_user(conn, key)
        if row is None or row["revoked_at"] is not None or row["disabled"]:
            return None
        if now >= self.session_expiry(row["last_seen_at"], row["expires_at"]):
            return None
        if now - row["last_seen_at"] >= TOUCH_INTERVAL:
            repository.touch_session(conn, key, now)
        return principal_from_user(row, key, row["csrf_token"])

    def principal_from_token(self, conn: Conn, secret: str, now: datetime) -> Principal | None:
        """The principal of a live integration token, or None (unknown, revoked, expired)."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        row = repository.token_by_hash(conn, secret_key(secret))
        if row is None or row["revoked_at"] is not None or now >= row["expires_at"]:
            return None
        if row["last_used_at"] is None or now - row["last_used_at"] >= TOUCH_INTERVAL:
            repository.touch_token(conn, row["id"], now)
        return principal_from_token(row)

    def logout(self, conn: Conn, principal: Principal, now: datetime, ip: str | None = None) -> None:
        if principal.session_key is None:
            return
        repository.revoke_session(conn, principal.session_key, now)
        audit.record(conn, actor=principal, action="logout", at=now, target=f"user:{principal.name}", ip=ip)

    # ---- users -------------------------------------------------------------------------------------

    def check_binding(self, conn: Conn, binding: Binding) -> None:
        """Raise AuthInputError unless the role has exactly the binding it needs, to places that exist."""
        role = binding.role
        if role in COUNTY_WIDE_ROLES:
            if binding.township_id or binding.village_id or binding.point_ids:
                raise AuthInputError(f"{role} is county-wide: no township, village or points")
        elif role is Role.TOWNSHIP_OFFICER:
            if binding.township_id is None or binding.village_id or binding.point_ids:
                raise AuthInputError("a township officer is bound to exactly one township (township_id)")
            if not repository.township_exists(conn, binding.township_id):
                raise AuthInputError(f"no township {binding.township_id}")
        elif role is Role.VILLAGE_OFFICER:
            if binding.village_id is None or binding.township_id or binding.point_ids:
                raise AuthInputError("a village officer is bound to exactly one village (village_id)")
            if not repository.village_exists(conn, binding.village_id):
                raise AuthInputError(f"no village {binding.village_id}")
        elif role is Role.CAREGIVER:
            if not binding.point_ids or binding.township_id or binding.village_id:
                raise AuthInputError("a caregiver is bound to one or more meal points (point_ids)")
            missing = repository.missing_points(conn, binding.point_ids)
            if missing:
                raise AuthInputError(f"no meal points {missing}")

    def create_user(self, conn: Conn, spec: UserCreate, actor: Principal | str, now: datetime,
                    ip: str | None = None) -> int:
        password = spec.password.get_secret_value()
        self.passwords.check_policy(password, spec.username)
        self.check_binding(conn, spec)
        user_id = repository.insert_user(conn, username=spec.username, display_name=spec.display_name,
                                         password_hash=self.passwords.hash(password), role=spec.role.value,
                                         township_id=spec.township_id, village_id=spec.village_id, at=now)
        if user_id is None:
            raise AuthConflictError(f"user name {spec.username!r} is taken")
        if spec.point_ids:
            repository.set_user_points(conn, user_id, spec.point_ids)
        audit.record(conn, actor=actor, action="user.create", at=now, target=f"user:{spec.username}", ip=ip,
                     detail=_binding_detail(spec))
        return user_id

    def update_user(self, conn: Conn, user_id: int, change: UserUpdate, actor: Principal | str, now: datetime,
                    ip: str | None = None) -> None:
        row = repository.user_by_id(conn, user_id)
        if row is None:
            raise AuthNotFoundError(f"no user {user_id}")
        target = f"user:{row['username']}"
        binding = change.binding()
        stays_admin = (binding.role if binding else row["role"]) == Role.BUREAU_ADMIN and not (
            change.disabled if change.disabled is not None else row["disabled"])
        if row["role"] == Role.BUREAU_ADMIN and not row["disabled"] and not stays_admin \
                and repository.other_active_admins(conn, user_id) == 0:
            raise AuthConflictError("this is the last active bureau admin; create another first")
        if binding is not None:
            self.check_binding(conn, binding)
            before = _binding_detail(Binding(role=row["role"], township_id=row["township_id"],
                                             village_id=row["village_id"], point_ids=row["point_ids"]))
            after = _binding_detail(binding)
            if before != after:
                repository.update_user(conn, user_id, now, role=binding.role.value,
                                       township_id=binding.township_id, village_id=binding.village_id)
                repository.set_user_points(conn, user_id, binding.point_ids)
                audit.record(conn, actor=actor, action="user.role_change", at=now, target=target, ip=ip,
                             detail={"from": before, "to": after})
        if change.disabled is not None and change.disabled != row["disabled"]:
            repository.update_user(conn, user_id, now, disabled=change.disabled)
            if change.disabled:
                repository.revoke_user_sessions(conn, user_id, now)
            audit.record(conn, actor=actor, action="user.disable" if change.disabled else "user.enable", at=now,
                         target=target, ip=ip)
        if change.password is not None:
            password = change.password.get_secret_value()
            self.passwords.check_policy(password, row["username"])
            repository.update_user(conn, user_id, now, password_hash=self.passwords.hash(password))
            # A reset password ends the sessions opened with the old one.
            repository.revoke_user_sessions(conn, user_id, now)
            audit.record(conn, actor=actor, action="user.password_reset", at=now, target=target, ip=ip)
        if "display_name" in change.model_fields_set and change.display_name != row["display_name"]:
            repository.update_user(conn, user_id, now, display_name=change.display_name)
            audit.record(conn, actor=actor, action="user.update", at=now, target=target, ip=ip,
                         detail={"display_name": change.display_name})

    def change_own_password(self, conn: Conn, principal: Principal, current: str, new: str, now: datetime,
                            ip: str | None = None) -> None:
        row = repository.user_by_id(conn, principal.id)
        if row is None or principal.kind is not PrincipalKind.USER:
            raise AuthNotFoundError("no such user")
        if not self.passwords.verify(row["password_hash"], current):
            audit.record(conn, actor=principal, action="password.change", at=now, target=f"user:{row['username']}",
                         ip=ip, ok=False, detail={"reason": "bad_password"})
            conn.commit()
            raise InvalidCredentialsError("the current password is wrong")
        self.passwords.check_policy(new, row["username"])
        repository.update_user(conn, principal.id, now, password_hash=self.passwords.hash(new))
        # Sessions elsewhere (perhaps the reason for the change) end; this one goes on.
        repository.revoke_user_sessions(conn, principal.id, now, keep=principal.session_key)
        audit.record(conn, actor=principal, action="password.change", at=now, target=f"user:{row['username']}",
                     ip=ip)

    # ---- tokens ------------------------------------------------------------------------------------

    def create_token(self, conn: Conn, spec: TokenCreate, actor: Principal | str, now: datetime,
                     ip: str | None = None) -> NewToken:
        self.check_binding(conn, spec)
        days = spec.days or self.settings.token_default_days
        if days > self.settings.token_max_days:
            raise AuthInputError(f"a token lives at most {self.settings.token_max_days} days")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created_by = actor.id if isinstance(actor, Principal) and actor.kind is PrincipalKind.USER else None
        expires_at = now + timedelta(days=days)
        token_id = repository.insert_token(conn, name=spec.name, token_hash=secret_key(secret),
                                           role=spec.role.value, township_id=spec.township_id,
                                           village_id=spec.village_id, created_by=created_by, at=now,
                                           expires_at=expires_at)
        if spec.point_ids:
            repository.set_token_points(conn, token_id, spec.point_ids)
        audit.record(conn, actor=actor, action="token.create", at=now, target=f"token:{token_id}", ip=ip,
                     detail={"name": spec.name, "expires_at": expires_at.isoformat(), **_binding_detail(spec)})
        return NewToken(token_id, secret)

    def revoke_token(self, conn: Conn, token_id: int, actor: Principal | str, now: datetime,
                     ip: str | None = None) -> None:
        if repository.token_by_id(conn, token_id) is None:
            raise AuthNotFoundError(f"no token {token_id}")
        if repository.revoke_token(conn, token_id, now):
            audit.record(conn, actor=actor, action="token.revoke", at=now, target=f"token:{token_id}", ip=ip)

    # ---- places ------------------------------------------------------------------------------------

    def create_township(self, conn: Conn, name: str, actor: Principal | str, now: datetime,
                        ip: str | None = None) -> int:
        township_id = repository.insert_township(conn, name)
        if township_id is None:
            raise AuthConflictError(f"township {name!r} exists")
        audit.record(conn, actor=actor, action="place.create", at=now, target=f"township:{township_id}", ip=ip,
                     detail={"name": name})
        return township_id

    def create_village(self, conn: Conn, township_id: int, name: str, actor: Principal | str, now: datetime,
                       ip: str | None = None) -> int:
        if not repository.township_exists(conn, township_id):
            raise AuthInputError(f"no township {township_id}")
        village_id = repository.insert_village(conn, township_id, name)
        if village_id is None:
            raise AuthConflictError(f"village {name!r} exists in township {township_id}")
        audit.record(conn, actor=actor, action="place.create", at=now, target=f"village:{village_id}", ip=ip,
                     detail={"name": name, "township_id": township_id})
        return village_id

    def places(self, conn: Conn, scope: Scope) -> dict[str, Any]:
        """Townships → villages → points within scope, as plain data for PlacesOut."""
        points = repository.points_in_scope(conn, scope)
        if scope.county:
            townships = repository.townships_in(conn, None)
            villages = repository.villages_in(conn, None)
        else:
            # Officers see every village of their own township or village, with or without points yet;
            # caregivers only their points' villages and townships.
            village_ids = set(scope.village_ids) | {p["village_id"] for p in points if p["village_id"]}
            villages = repository.villages_in(conn, scope.township_ids, village_ids)
            township_ids = (set(scope.township_ids) | {p["township_id"] for p in points if p["township_id"]}
                            | {v["township_id"] for v in villages})
            townships = repository.townships_in(conn, township_ids)
        tree: dict[int, dict[str, Any]] = {
            t["id"]: {"id": t["id"], "name": t["name"], "villages": [], "points_without_village": []}
            for t in townships}
        village_nodes: dict[int, dict[str, Any]] = {}
        for v in villages:
            if v["township_id"] in tree:
                node = {"id": v["id"], "name": v["name"], "points": []}
                village_nodes[v["id"]] = node
                tree[v["township_id"]]["villages"].append(node)
        unplaced: list[dict[str, Any]] = []
        for p in points:
            leaf = {"id": p["id"], "name": p["name"]}
            if p["village_id"] in village_nodes:
                village_nodes[p["village_id"]]["points"].append(leaf)
            elif p["township_id"] in tree:
                tree[p["township_id"]]["points_without_village"].append(leaf)
            else:
                unplaced.append(leaf)
        return {"townships": list(tree.values()), "unplaced_points": unplaced}


def _binding_detail(binding: Binding) -> dict[str, Any]:
    return {"role": Role(binding.role).value, "township_id": binding.township_id,
            "village_id": binding.village_id, "point_ids": sorted(set(binding.point_ids))}

