"""HTTP routes of auth: login and logout, the caller, users, tokens, the audit log and places."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from . import repository
from .deps import (
    Conn,
    CurrentPrincipal,
    CurrentScope,
    OptionalPrincipal,
    Service,
    client_ip,
    cookie_secure,
    now,
    require,
)
from .errors import (
    AuthConflictError,
    AuthError,
    AuthInputError,
    AuthNotFoundError,
    InvalidCredentialsError,
    LoginThrottledError,
)
from .schemas import (
    AuditOut,
    LoginIn,
    LoginOut,
    MeOut,
    PasswordChange,
    PlacesOut,
    ScopeOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    TownshipCreate,
    UserCreate,
    UserOut,
    UserUpdate,
    VillageCreate,
)
from .scopes import Principal, Role, masker_for, scope_for

router = APIRouter(prefix="/api/v1", tags=["auth"])

Admin = Annotated[Principal, Depends(require(Role.BUREAU_ADMIN, users_only=True))]
AdminOrToken = Annotated[Principal, Depends(require(Role.BUREAU_ADMIN))]


@contextmanager
def _http_errors() -> Iterator[None]:
    """Turn the package's errors into HTTP answers (only routers do this)."""
    try:
        yield
    except LoginThrottledError as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    except InvalidCredentialsError as exc:
        raise HTTPException(401, str(exc)) from exc
    except AuthInputError as exc:
        raise HTTPException(422, str(exc)) from exc
    except AuthConflictError as exc:
        raise HTTPException(409, str(exc)) from exc
    except AuthNotFoundError as exc:
        raise HTTPException(404, str(exc.args[0] if exc.args else exc)) from exc
    except AuthError as exc:
        raise HTTPException(400, str(exc)) from exc


def _me(principal: Principal, **extra: Any) -> dict[str, Any]:
    scope = scope_for(principal)
    masker = masker_for(principal.role)
    return dict(
        kind=principal.kind.value, id=principal.id, name=principal.name, display_name=principal.display_name,
        role=principal.role, township_id=principal.township_id, village_id=principal.village_id,
        point_ids=sorted(principal.point_ids),
        scope=ScopeOut(county=scope.county, township_ids=sorted(scope.township_ids),
                       village_ids=sorted(scope.village_ids), point_ids=sorted(scope.point_ids)),
        unmasked_fields=sorted(k.value for k in masker.unmasked),
        csrf_token=principal.csrf_token, **extra)


# ---- sessions ---------------------------------------------------------------------------------------


@router.post("/auth/login", response_model=LoginOut, summary="Sign in; sets the session cookie")
def login(body: LoginIn, request: Request, response: Response, conn: Conn, service: Service) -> LoginOut:
    with _http_errors():
        result = service.login(conn, body.username, body.password.get_secret_value(), now(request),
                               client_ip(request), request.headers.get("user-agent"))
    settings = service.settings
    response.set_cookie(settings.cookie_name, result.cookie_value, max_age=settings.session_max_hours * 3600,
                        path="/", httponly=True, secure=cookie_secure(request, settings), samesite="lax")
    return LoginOut(**_me(result.principal, expires_at=result.expires_at))


@router.post("/auth/logout", status_code=204, summary="Sign out; ends the server-side session")
def logout(request: Request, response: Response, conn: Conn, service: Service,
           principal: OptionalPrincipal) -> Response:
    if principal is not None:
        service.logout(conn, principal, now(request), client_ip(request))
        conn.commit()
    settings = service.settings
    response = Response(status_code=204)
    response.delete_cookie(settings.cookie_name, path="/", httponly=True,
                           secure=cookie_secure(request, settings), samesite="lax")
    return response


@router.get("/auth/me", response_model=MeOut, summary="The caller: role, binding, scope, CSRF token")
def me(principal: CurrentPrincipal) -> MeOut:
    return MeOut(**_me(principal))


@router.post("/auth/password", status_code=204, summary="Change one's own password")
def change_password(body: PasswordChange, request: Request, conn: Conn, service: Service,
                    principal: Annotated[Principal, Depends(require(*Role, users_only=True))]) -> Response:
    with _http_errors():
        service.change_own_password(conn, principal, body.current_password.get_secret_value(),
                                    body.new_password.get_secret_value(), now(request), client_ip(request))
    conn.commit()
    return Response(status_code=204)


# ---- users ------------------------------------------------------------------------------------------


def _user_out(conn: Conn, user_id: int) -> UserOut:
    row = repository.user_by_id(conn, user_id)
    if row is None:
        raise HTTPException(404, f"no user {user_id}")
    return UserOut(**{k: v for k, v in row.items() if k != "password_hash"})


@router.get("/auth/users", response_model=list[UserOut], summary="All users (bureau admin)")
def list_users(conn: Conn, _: Admin) -> list[UserOut]:
    return [UserOut(**{k: v for k, v in row.items() if k != "password_hash"}) for row in repository.list_users(conn)]


@router.post("/auth/users", response_model=UserOut, status_code=201, summary="Create a user (bureau admin)")
def create_user(body: UserCreate, request: Request, conn: Conn, service: Service, admin: Admin) -> UserOut:
    with _http_errors():
        user_id = service.create_user(conn, body, admin, now(request), client_ip(request))
    conn.commit()
    return _user_out(conn, user_id)


@router.get("/auth/users/{user_id}", response_model=UserOut, summary="One user (bureau admin)")
def get_user(user_id: int, conn: Conn, _: Admin) -> UserOut:
    return _user_out(conn, user_id)


@router.patch("/auth/users/{user_id}", response_model=UserOut,
              summary="Change role and binding, disable, reset password (bureau admin)")
def update_user(user_id: int, body: UserUpdate, request: Request, conn: Conn, service: Service,
                admin: Admin) -> UserOut:
    with _http_errors():
        service.update_user(conn, user_id, body, admin, now(request), client_ip(request))
    conn.commit()
    return _user_out(conn, user_id)


# ---- tokens -----------------------------------------------------------------------------------------


@router.get("/auth/tokens", response_model=list[TokenOut], summary="Integration tokens (bureau admin)")
def list_tokens(conn: Conn, _: Admin) -> list[TokenOut]:
    return [TokenOut(**row) for row in repository.list_tokens(conn)]


@router.post("/auth/tokens", response_model=TokenCreated, status_code=201,
             summary="Create an integration token; its secret is shown once (bureau admin)")
def create_token(body: TokenCreate, request: Request, conn: Conn, service: Service, admin: Admin) -> TokenCreated:
    with _http_errors():
        new = service.create_token(conn, body, admin, now(request), client_ip(request))
    conn.commit()
    row = repository.token_by_id(conn, new.token_id)
    assert row is not None
    return TokenCreated(**row, token=new.secret)


@router.delete("/auth/tokens/{token_id}", status_code=204, summary="Revoke a token (bureau admin)")
def revoke_token(token_id: int, request: Request, conn: Conn, service: Service, admin: Admin) -> Response:
    with _http_errors():
        service.revoke_token(conn, token_id, admin, now(request), client_ip(request))
    conn.commit()
    return Response(status_code=204)


# ---- audit ------------------------------------------------------------------------------------------


@router.get("/auth/audit", response_model=list[AuditOut], summary="The audit log, newest first (bureau admin)")
def audit_log(
    conn: Conn, _: AdminOrToken,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    target: Annotated[str | None, Query(max_length=128)] = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> list[AuditOut]:
    rows = repository.list_audit(conn, limit=limit, action=action, actor=actor, target=target, before_id=before_id)
    return [AuditOut(**row) for row in rows]


# ---- places -----------------------------------------------------------------------------------------


@router.get("/places", response_model=PlacesOut, summary="Townships, villages and meal points in the caller's scope")
def places(conn: Conn, service: Service, scope: CurrentScope) -> PlacesOut:
    return PlacesOut.model_validate(service.places(conn, scope))


@router.post("/places/townships", status_code=201, summary="Add a township (bureau admin)")
def create_township(body: TownshipCreate, request: Request, conn: Conn, service: Service,
                    admin: Admin) -> dict[str, int]:
    with _http_errors():
        township_id = service.create_township(conn, body.name, admin, now(request), client_ip(request))
    conn.commit()
    return {"id": township_id}


@router.post("/places/villages", status_code=201, summary="Add a village to a township (bureau admin)")
def create_village(body: VillageCreate, request: Request, conn: Conn, service: Service,
                   admin: Admin) -> dict[str, int]:
    with _http_errors():
        village_id = service.create_village(conn, body.township_id, body.name, admin, now(request),
                                            client_ip(request))
    conn.commit()
    return {"id": village_id}
