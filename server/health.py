"""GET /health: can the server reach its database and its MQTT broker right now."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from paho.mqtt.enums import CallbackAPIVersion
from psycopg_pool import ConnectionPool

from server.settings import MqttSettings

HEALTH_TIMEOUT_SECONDS = 3.0

router = APIRouter(tags=["health"])


def check_database(pool: ConnectionPool[psycopg.Connection[Any]]) -> dict[str, Any]:
    try:
        with pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        return {"ok": True, "timescaledb": row[0] if row else None}
    except Exception as exc:  # any failure means "not healthy"; report it, don't raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def check_broker(m: MqttSettings) -> dict[str, Any]:
    """Log in to the broker with the server's account and wait for CONNACK."""
    result: dict[str, Any] = {"ok": False, "error": "no CONNACK"}
    done = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result.update({"ok": not reason.is_failure, "error": None if not reason.is_failure else str(reason)})
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    try:
        client.username_pw_set(m.username, m.resolved_password())
        client.connect(m.host, m.port, keepalive=10)
        client.loop_start()
        done.wait(HEALTH_TIMEOUT_SECONDS)
        client.disconnect()
        client.loop_stop()
    except Exception as exc:  # connection refused, DNS, bad secret file: all "not healthy"
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if result["ok"]:
        result.pop("error")
    return result


@router.get("/health", summary="Database and broker reachability")
def health(request: Request) -> JSONResponse:
    database = check_database(request.app.state.pool)
    broker = check_broker(request.app.state.settings.mqtt)
    ok = database["ok"] and broker["ok"]
    body = {"status": "ok" if ok else "degraded", "database": database, "broker": broker}
    return JSONResponse(body, status_code=200 if ok else 503)
