"""The Starlette app: POST <path> mints a token (and dispatches the agent), plus health routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from token_server.auth import authenticate
from token_server.config import DispatchMode, Settings, load_settings
from token_server.dispatch import Dispatcher, dispatch_metadata
from token_server.errors import ApiError
from token_server.request_log import RequestLogMiddleware
from token_server.token_request import MAX_BODY_BYTES, TokenRequest, parse_body, parse_token_request
from token_server.tokens import mint_token, participant_identity

logger = logging.getLogger("token_server")

_NO_STORE = {"Cache-Control": "no-store"}


async def _read_body(request: Request) -> bytes:
    """The body, refusing to buffer more than MAX_BODY_BYTES whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"request body is over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"request body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _agent_for(settings: Settings, request: TokenRequest) -> str | None:
    """Which agent to dispatch: the requested one if allowed, else the configured one."""
    if settings.dispatch_mode is DispatchMode.NONE:
        return None
    if request.agent is None:
        return settings.agent_name
    if not settings.agent_allowed(request.agent.agent_name):
        raise ApiError(
            403,
            "agent_not_allowed",
            f"agent {request.agent.agent_name!r} is not allowed here; set AGENT_NAME or "
            "ALLOWED_AGENT_NAMES on the token server to allow it",
        )
    return request.agent.agent_name


async def issue_token(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    log: dict[str, Any] = request.scope["state"]["log"]
    authenticate(settings, request.headers)
    token_request = parse_token_request(parse_body(await _read_body(request)))
    log["room"] = token_request.room_name

    agent_name = _agent_for(settings, token_request)
    identity = participant_identity(token_request)

    room_dispatch = None
    dispatch_id = None
    if agent_name and settings.dispatch_mode is DispatchMode.API:
        dispatcher: Dispatcher = request.app.state.dispatcher
        metadata = dispatch_metadata(settings, token_request, identity)
        result = await dispatcher.ensure_dispatched(token_request.room_name, agent_name, metadata)
        dispatch_id = result.dispatch_id
        log["dispatch_id"] = dispatch_id
        log["dispatch"] = "created" if result.created else "existing"
    elif agent_name and settings.dispatch_mode is DispatchMode.TOKEN:
        metadata = dispatch_metadata(settings, token_request, identity)
        room_dispatch = api.RoomAgentDispatch(agent_name=agent_name, metadata=metadata)
        log["dispatch"] = "token"

    token = mint_token(settings, token_request, identity, room_dispatch)
    body: dict[str, Any] = {
        "token": token,
        "participant_token": token,
        "participantToken": token,
        "serverUrl": settings.livekit_public_url,
        "server_url": settings.livekit_public_url,
        "room_name": token_request.room_name,
        "roomName": token_request.room_name,
        "participant_identity": identity,
        "participant_name": token_request.participant_name,
        "participantName": token_request.participant_name,
    }
    if agent_name:
        body["agent_name"] = agent_name
    if dispatch_id:
        body["dispatch_id"] = dispatch_id
    return JSONResponse(body, headers=_NO_STORE)


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when LiveKit's API answers an authenticated call with these credentials."""
    settings: Settings = request.app.state.settings
    lkapi: api.LiveKitAPI = request.app.state.lkapi
    try:
        async with asyncio.timeout(settings.dispatch_timeout_seconds):
            await lkapi.room.list_rooms(api.ListRoomsRequest(names=["readyz-probe"]))
    except TimeoutError:
        detail = f"LiveKit API did not answer within {settings.dispatch_timeout_seconds:g}s"
    except ServerError as exc:
        detail = f"LiveKit API refused the probe: {exc.code} {exc.message}"
    except (aiohttp.ClientError, OSError) as exc:
        detail = f"cannot reach LiveKit at {settings.livekit_url}: {type(exc).__name__}: {exc}"
    else:
        return JSONResponse({"status": "ready", "livekit_url": settings.livekit_url})
    request.scope["state"]["log"]["outcome"] = "livekit_unavailable"
    return JSONResponse({"error": "livekit_unavailable", "detail": detail}, status_code=503)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    request.scope.setdefault("state", {}).setdefault("log", {})["outcome"] = exc.code
    return exc.response()


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed here; the token route takes POST"
    return await _api_error(request, ApiError(exc.status_code, code, detail, exc.headers or None))


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", exc_info=exc)
    return await _api_error(
        request, ApiError(500, "internal_error", "the token server hit an unexpected error")
    )


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One client for the app's lifetime: its aiohttp session must be created inside the loop.
        lkapi = api.LiveKitAPI(
            settings.livekit_url,
            settings.api_key,
            settings.api_secret,
            timeout=aiohttp.ClientTimeout(total=settings.dispatch_timeout_seconds),
        )
        app.state.lkapi = lkapi
        app.state.dispatcher = Dispatcher(settings, lkapi)
        try:
            yield
        finally:
            await lkapi.aclose()

    app = Starlette(
        routes=[
            Route(settings.path, issue_token, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=[Middleware(RequestLogMiddleware)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


def configure_logging(level: str) -> None:
    """Plain lines on stderr; a no-op when logging is already set up (e.g. by the embedding app)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` and multi-worker runs: each worker reads the environment."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
