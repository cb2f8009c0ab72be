"""`yangyi-server`: the HTTP API (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from server import health
from server.alerts.router import ack_router as alert_ack_router
from server.alerts.router import router as alerts_router
from server.auth.deps import guard_points
from server.auth.router import router as auth_router
from server.checkins.router import router as checkins_router
from server.db.pool import make_pool
from server.errors import ConfigError, NotFoundError
from server.ledger.router import SCOPE_AWARE_ROUTES as LEDGER_SCOPE_AWARE_ROUTES
from server.ledger.router import router as ledger_router
from server.registry.elders_router import router as elders_router
from server.registry.import_router import router as registry_import_router
from server.registry.router import router as registry_router
from server.safety.router import router as safety_router
from server.settings import Settings, load_settings
from server.subsidy.router import SCOPE_AWARE_ROUTES as SUBSIDY_SCOPE_AWARE_ROUTES
from server.subsidy.router import router as subsidy_router
from server.telemetry.router import router as telemetry_router
from server.vision.router import router as vision_router
from server.web.router import router as web_router

log = logging.getLogger(__name__)

# Open: health (for probes) and auth (to log in). Everything else is behind the place guard: routes
# with {point_id} answer only inside the caller's scope; list routes named here filter by scope.
OPEN_ROUTERS = (health.router, auth_router, alert_ack_router, web_router)
GUARDED_ROUTERS = (registry_router, telemetry_router, checkins_router, safety_router, alerts_router,
                   ledger_router, elders_router, vision_router, subsidy_router, registry_import_router)
SCOPE_AWARE_ROUTES = (
    frozenset({"list_points", "list_alerts", "alerts_stream"}) | LEDGER_SCOPE_AWARE_ROUTES | SUBSIDY_SCOPE_AWARE_ROUTES
)


def create_app(settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    """Build the application; the pool opens on start-up and closes on shutdown."""
    pool = make_pool(settings.db)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=False)
        try:
            yield
        finally:
            pool.close()

    # No /docs or /redoc: FastAPI's pages load Swagger UI from a CDN, which offline offices can't reach.
    app = FastAPI(title="Yangyi 养怡 server", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.pool = pool
    app.state.clock = clock
    app.state.auth_settings = settings.auth
    add_error_handlers(app)
    for router in OPEN_ROUTERS:
        app.include_router(router)
    guard = Depends(guard_points(scope_aware=SCOPE_AWARE_ROUTES))
    for router in GUARDED_ROUTERS:
        app.include_router(router, dependencies=[guard])
    return app


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


def add_error_handlers(app: FastAPI) -> None:
    """The server's own errors as HTTP answers, once for every router: a NotFoundError (no such meal
    point, device, elder) is a 404 with its message."""
    app.add_exception_handler(NotFoundError, _not_found)


def main(argv: list[str] | None = None) -> int:
    """Console script `yangyi-server`."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="yangyi-server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--validate-config", action="store_true", help="check the settings and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        settings.db.resolved_dsn()
        settings.mqtt.resolved_password()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if args.validate_config:
        print("settings OK")
        return 0
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
