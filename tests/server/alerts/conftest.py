"""A local HTTP server standing in for notification providers (WeCom, DingTalk, SMS, webhooks)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from .dbkit import Providers


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    delay_s: float = 0.0


@dataclass
class Stub:
    """What the stand-in received, and how it answers (replace `respond` per test)."""

    base_url: str
    requests: list[Request] = field(default_factory=list)
    respond: Callable[[Request], Reply] = lambda req: Reply()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def provider_stub() -> Iterator[Stub]:
    stub = Stub(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            req = Request("POST", parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
            stub.requests.append(req)
            reply = stub.respond(req)
            if reply.delay_s:
                time.sleep(reply.delay_s)  # a slow provider, to exercise the client's timeout
            raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="provider-stub", daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# dbkit imports this module, so these fixtures import it when they run.
@pytest.fixture
def point(tsdb_dsn: str, unique_point_id: str) -> dict[str, Any]:
    """A placed meal point with its chain of contacts (caregiver, village officer, township leader)."""
    from .dbkit import add_contacts, place_point

    township_id, village_id = place_point(tsdb_dsn, unique_point_id)
    people = add_contacts(tsdb_dsn, unique_point_id, township_id, village_id)
    return {"id": unique_point_id, "township_id": township_id, "village_id": village_id, **people}


@pytest.fixture
def providers(provider_stub: Stub) -> Providers:
    from .dbkit import Providers

    return Providers(provider_stub)
