"""FastAPI dependencies every router uses: the principal, role checks, its scope, the point guard,
field masking and the audit helper.

    current_principal   401 unless a live bearer token (Authorization: Bearer yyt_…) or session cookie;
                        cookie-authenticated unsafe methods must echo the session's CSRF token
    require(*roles)     403 unless the principal has one of the roles
    current_scope       the principal's Scope (filter list queries with scope.sql_filter("point_id"))
    guard_points(...)   router-level: {point_id} routes answer 404 outside the scope; other routes are
                        county-wide only unless named in scope_aware (they filter by scope themselves)
    current_masker      masks ID numbers, phones and categories the role may not see
    auditor             writes an audit entry in the request's own transaction
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request

from server.db.pool import connection

from . import audit, repository
from .scopes import Masker, Principal, PrincipalKind, Role, Scope, masker_for, scope_for
from .service import AuthService, csrf_matches
from .settings import AuthSettings, CookieSecure

Conn = Annotated[psycopg.Connection[Any], Depends(connection)]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NOT_SIGNED_IN = "not signed in"


def auth_settings(request: Request) -> AuthSettings:
    """Settings from app.state.auth_settings, else app.state.settings.auth, else the environment."""
    state = request.app.state
    found = getattr(state, "auth_settings", None) or getattr(getattr(state, "settings", None), "auth", None)
    if not isinstance(found, AuthSettings):
        found = AuthSettings()
        state.auth_settings = found
    return found


def auth_service(request: Request) -> AuthService:
    """One AuthService per application (its argon2 hasher and limits)."""
    state = request.app.state
    service = getattr(state, "auth_service", None)
    if not isinstance(service, AuthService):
        service = AuthService(auth_settings(request))
        state.auth_service = service
    return service


def now(request: Request) -> datetime:
    """The application's clock (app.state.clock, injectable in tests)."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


def client_ip(request: Request) -> str | None:
    """The peer address; behind a proxy run uvicorn with --proxy-headers so this is the real client."""
    return request.client.host if request.client else None


def cookie_secure(request: Request, settings: AuthSettings) -> bool:
    if settings.cookie_secure is CookieSecure.AUTO:
        return request.url.scheme == "https"
    return settings.cookie_secure is CookieSecure.ALWAYS


Service = Annotated[AuthService, Depends(auth_service)]


def optional_principal(request: Request, conn: Conn, service: Service) -> Principal | None:
    """The caller, or None when anonymous. A bad bearer token is 401, never a fall-back to the cookie."""
    at = now(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        principal = service.principal_from_token(conn, secret.strip(), at) if scheme.lower() == "bearer" else None
        if principal is None:
            raise HTTPException(401, "invalid, expired or revoked token", headers={"WWW-Authenticate": "Bearer"})
        return principal
    cookie = request.cookies.get(service.settings.cookie_name)
    if not cookie:
        return None
    principal = service.principal_from_session(conn, cookie, at)
    if principal is None:
        return None
    if request.method not in SAFE_METHODS and not csrf_matches(
            principal.csrf_token, request.headers.get(service.settings.csrf_header)):
        raise HTTPException(403, f"missing or wrong {service.settings.csrf_header} header")
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


def current_principal(principal: OptionalPrincipal) -> Principal:
    """The signed-in user or token; 401 otherwise."""
    if principal is None:
        raise HTTPException(401, NOT_SIGNED_IN, headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(*roles: Role, users_only: bool = False) -> Callable[..., Principal]:
    """A dependency admitting only these roles (and, with users_only, only signed-in people, not tokens)."""
    allowed = frozenset(roles)

    def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(403, "your role may not do this")
        if users_only and principal.kind is not PrincipalKind.USER:
            raise HTTPException(403, "integration tokens may not do this")
        return principal

    return check


def current_scope(principal: CurrentPrincipal) -> Scope:
    return scope_for(principal)


CurrentScope = Annotated[Scope, Depends(current_scope)]


def current_masker(principal: CurrentPrincipal) -> Masker:
    return masker_for(principal.role)


def guard_points(scope_aware: Collection[str] = ()) -> Callable[..., None]:
    """A router-level dependency that keeps a principal inside its scope.

    Routes with a {point_id} path parameter answer 404 (as for an unknown point, so existence does not
    leak) when the point is outside the scope. Routes without one are county-wide only, unless their
    name (the endpoint function's name) is in scope_aware: those filter their rows with the scope.
    """
    aware = frozenset(scope_aware)

    def guard(request: Request, conn: Conn, principal: CurrentPrincipal) -> None:
        scope = scope_for(principal)
        if scope.county:
            return
        point_id = request.path_params.get("point_id")
        if point_id is not None:
            place = repository.point_place(conn, str(point_id))
            if place is None or not scope.allows(place):
                raise HTTPException(404, f"no meal point {point_id!r}")
            return
        route = request.scope.get("route")
        if getattr(route, "name", None) not in aware:
            raise HTTPException(403, "this endpoint is county-wide only")

    return guard


@dataclass(frozen=True, slots=True)
class Auditor:
    """Records audit entries for the current principal and request, in the request's transaction."""

    conn: psycopg.Connection[Any]
    principal: Principal
    ip: str | None
    clock: Callable[[], datetime]

    def __call__(self, action: str, target: str | None = None, *, ok: bool = True, **detail: Any) -> int:
        return audit.record(self.conn, actor=self.principal, action=action, at=self.clock(), target=target,
                            ip=self.ip, ok=ok, detail=detail)


def auditor(request: Request, conn: Conn, principal: CurrentPrincipal) -> Auditor:
    return Auditor(conn, principal, client_ip(request), lambda: now(request))
