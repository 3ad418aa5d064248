"""One structured JSON line per request: request id, answering process, route, room, outcome,
latency. No secrets. The same outcome and latency feed the request metrics, when they are on.

Pure ASGI middleware (not BaseHTTPMiddleware) so it adds no task per request on the hot path.
Handlers add fields (room, dispatch id, error code) to `scope["state"]["log"]`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Collection
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from token_server import metrics
from token_server.ids import random_hex
from token_server.logs import direct_line

logger = logging.getLogger("token_server.requests")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _json(record: dict[str, Any]) -> str:
    """orjson (a tenth of json's time); json for what orjson refuses (a lone surrogate)."""
    try:
        return orjson.dumps(record, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(record, default=str, separators=(",", ":"))


class RequestLogMiddleware:
    """`routes`: the app's paths, the only values the metrics' `route` label takes (any other
    path counts as `other`, so a scan of random URLs cannot grow the label set)."""

    def __init__(
        self, app: ASGIApp, routes: Collection[str] = (), with_metrics: bool = False
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.with_metrics = with_metrics
        self.pid = os.getpid()  # which process answered (TOKEN_SERVER_WORKERS > 1)
        # decided as the app starts serving (Starlette builds its middleware on the first call)
        self._direct = direct_line(logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else random_hex(32)
        fields: dict[str, Any] = {}
        scope.setdefault("state", {})["log"] = fields
        scope["state"]["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            outcome = fields.pop("outcome", "ok" if status < 400 else "error")
            path = scope["path"]
            if self.with_metrics:
                metrics.observe_request(
                    path if path in self.routes else metrics.OTHER_ROUTE, outcome, seconds
                )
            level = logging.INFO if status < 500 else logging.WARNING
            if path in {"/healthz", "/readyz", "/metrics"} and status < 400:
                level = logging.DEBUG
            if logger.isEnabledFor(level):
                self._log(level, scope, request_id, status, outcome, fields, seconds)

    def _log(
        self,
        level: int,
        scope: Scope,
        request_id: str,
        status: int,
        outcome: str,
        fields: dict[str, Any],
        seconds: float,
    ) -> None:
        record = {
            "event": "request",
            "request_id": request_id,
            "pid": self.pid,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "outcome": outcome,
            **fields,
            "latency_ms": round(seconds * 1000, 2),
        }
        line = _json(record)
        if self._direct is not None:
            self._direct(level, line)
            return
        # `logger.log` minus its walk up the stack for the caller's file and line (the same for
        # every request line, and a tenth of its cost)
        logger.handle(logger.makeRecord(logger.name, level, __file__, 0, line, (), None))
