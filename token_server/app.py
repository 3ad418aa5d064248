"""The Starlette app: POST <path> mints a token (and dispatches the agent), plus health routes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from livekit import api
from livekit.api.twirp_client import ServerError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from token_server import metrics
from token_server.auth import authenticate
from token_server.config import METRICS_PATH, OPENAPI_PATH, DispatchMode, Settings, load_settings
from token_server.disconnect import caller_hung_up
from token_server.dispatch import Dispatcher, dispatch_metadata, new_request_id
from token_server.dispatch_follow import DispatchFollower
from token_server.errors import ApiError
from token_server.livekit_clients import LiveKitClients
from token_server.logs import configure_logging, flush_logs
from token_server.openapi import openapi_route
from token_server.request_log import RequestLogMiddleware
from token_server.room_lock import InProcessRoomLock, RoomLock, lock_wait_seconds, room_lock_for
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
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ApiError(
                    413, "body_too_large", f"request body is over {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
    except ClientDisconnect:  # nothing was done for it yet; nobody is left to answer
        raise ApiError(499, "client_disconnected", "the caller hung up mid-request") from None
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


class _AnswerResponse(JSONResponse):
    """The token answer; if it cannot be delivered, `undo` withdraws the dispatch made for it, so
    no agent is sent into a room whose caller never got a token."""

    def __init__(self, body: dict[str, Any], undo: Callable[[str], Awaitable[None]]) -> None:
        super().__init__(body, headers=_NO_STORE)
        self._undo = undo

    def render(self, content: Any) -> bytes:
        # the same compact UTF-8 JSON as Starlette's json.dumps, for a twentieth of the time
        return orjson.dumps(content)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except BaseException as exc:
            await asyncio.shield(self._undo(f"the answer was not delivered: {type(exc).__name__}"))
            raise


async def _no_undo(_: str) -> None:
    return None


async def issue_token(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    log: dict[str, Any] = request.scope["state"]["log"]
    authenticate(settings, request.headers)
    token_request = parse_token_request(parse_body(await _read_body(request)))
    log["room"] = token_request.room_name

    agent_name = _agent_for(settings, token_request)
    identity = participant_identity(token_request)
    room = token_request.room_name

    # Everything that can refuse the request runs before anything is dispatched.
    room_dispatch = None
    if agent_name and settings.dispatch_mode is DispatchMode.TOKEN:
        metadata = dispatch_metadata(settings, token_request, identity, new_request_id())
        room_dispatch = api.RoomAgentDispatch(agent_name=agent_name, metadata=metadata)
        log["dispatch"] = "token"
    token = mint_token(settings, token_request, identity, room_dispatch)

    dispatch_id = None
    undo = _no_undo
    if agent_name and settings.dispatch_mode is DispatchMode.API:
        dispatcher: Dispatcher = request.app.state.dispatcher
        follower: DispatchFollower | None = request.app.state.follower
        request_id = new_request_id()
        metadata = dispatch_metadata(settings, token_request, identity, request_id)
        result = await dispatcher.ensure_dispatched(room, agent_name, metadata, request_id)
        dispatch_id = result.dispatch_id
        if dispatch_id:
            log["dispatch_id"] = dispatch_id
        log["dispatch"] = "created" if result.created else "existing"
        withdraw = functools.partial(
            _withdraw, dispatcher, follower, room, agent_name, dispatch_id, metadata
        )
        if result.created:
            undo = withdraw
            if follower is not None:
                follower.follow(room, agent_name, metadata, dispatch_id)
        elif follower is not None and follower.hold(room, agent_name):
            undo = withdraw  # a retry: it holds the dispatch with the request that made it
        # strict mode waits on the room this process follows (a retry of another's is answered)
        if (
            settings.dispatch_strict
            and follower is not None
            and follower.following(room, agent_name)
        ):
            await _wait_taken(settings, follower, room, agent_name, undo, log)
        if caller_hung_up(request.receive):
            await undo("the caller hung up before the answer")
            log["outcome"] = "caller_gone"
            return Response(status_code=499)

    try:
        return _AnswerResponse(
            _answer(settings, token_request, identity, token, agent_name, dispatch_id), undo
        )
    except BaseException:
        await undo("the answer could not be built")
        raise


def _answer(
    settings: Settings,
    token_request: TokenRequest,
    identity: str,
    token: str,
    agent_name: str | None,
    dispatch_id: str | None,
) -> dict[str, Any]:
    """Every spelling of each field the platform and LiveKit's SDKs accept."""
    room = token_request.room_name
    body: dict[str, Any] = {
        "token": token,
        "participant_token": token,
        "participantToken": token,
        "serverUrl": settings.livekit_public_url,
        "server_url": settings.livekit_public_url,
        "room_name": room,
        "roomName": room,
        "participant_identity": identity,
        "participant_name": token_request.participant_name,
        "participantName": token_request.participant_name,
    }
    if agent_name:
        body["agent_name"] = agent_name
    if dispatch_id:
        body["dispatch_id"] = dispatch_id
    return body


async def _withdraw(
    dispatcher: Dispatcher,
    follower: DispatchFollower | None,
    room: str,
    agent_name: str,
    dispatch_id: str | None,
    metadata: str,
    reason: str,
) -> None:
    """Take back a dispatch whose token never reached its caller (`dispatch_id` None: made with
    the room, found by this request's metadata)."""
    logger.warning("withdrawing the dispatch of room %r: %s", room, reason)
    if follower is not None and follower.following(room, agent_name):
        await follower.withdraw(room, agent_name, reason)
        return
    with contextlib.suppress(Exception):
        dispatch_id = dispatch_id or await dispatcher.find_ours(room, agent_name, metadata)
        if dispatch_id:
            await dispatcher.delete(room, dispatch_id)


async def _wait_taken(
    settings: Settings,
    follower: DispatchFollower,
    room: str,
    agent_name: str,
    undo: Callable[[str], Awaitable[None]],
    log: dict[str, Any],
) -> None:
    """Strict mode: answer only once a worker has taken the job, else 503 saying why."""
    timeout = settings.dispatch_strict_timeout_seconds
    fate = await follower.wait_taken(room, agent_name, timeout)
    if fate is not None and fate.taken:
        log["dispatch"] = f"taken after {fate.dispatches} dispatch(es)"
        return
    if fate is None:
        dispatches, blocker, observed = follower.explain(room, agent_name)
        await undo(f"strict mode: no worker took the job within {timeout:g}s")
    else:
        dispatches, blocker, observed = fate.dispatches, fate.blocker, fate.reason
    raise ApiError(
        503,
        blocker.value,
        f"no worker took the job for agent {agent_name!r} within {timeout:g}s "
        f"({dispatches} dispatch(es)): {observed}",
        headers={"Retry-After": "5"},
    )


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when LiveKit's API answers an authenticated call with these credentials, and, with
    REDIS_URL, when Redis answers too (without it every dispatching request gets a 503)."""
    settings: Settings = request.app.state.settings
    lkapi: api.LiveKitAPI = request.app.state.lkapi
    room_lock: RoomLock = request.app.state.room_lock
    lock_problem = await room_lock.problem()
    if lock_problem is not None:
        request.scope["state"]["log"]["outcome"] = "redis_unavailable"
        return JSONResponse({"error": "redis_unavailable", "detail": lock_problem}, status_code=503)
    try:
        async with asyncio.timeout(settings.dispatch_timeout_seconds):
            with metrics.livekit_call("list_rooms"):
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


async def metrics_route(request: Request) -> Response:
    """Prometheus's scrape, behind the API key (see `metrics`)."""
    authenticate(request.app.state.settings, request.headers)
    body, content_type = metrics.exposition()
    return Response(body, headers={"Content-Type": content_type, **_NO_STORE})


# What a browser on an allowed origin may send to the token route, and read from its answer.
CORS_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "X-Request-ID")


def _middleware(settings: Settings, routes: list[Route]) -> list[Middleware]:
    """The request log (and metrics) outermost, so CORS preflights are logged and counted too;
    CORS only when origins are configured: the platform calls server to server and needs none."""
    stack = [
        Middleware(
            RequestLogMiddleware,
            routes=[route.path for route in routes],
            with_metrics=settings.metrics,
        )
    ]
    if settings.cors_origins:
        # `*` with header-based auth: any page may call, but only with a key it was given (no
        # cookies are involved, so allow_credentials stays off and `*` is sent as is).
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["POST"],
                allow_headers=list(CORS_HEADERS),
                expose_headers=["X-Request-ID"],
                max_age=600,
            )
        )
    return stack


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
        allowed = (exc.headers or {}).get("Allow", "POST")
        detail = f"{request.method} is not allowed here; {request.url.path} takes {allowed}"
    return await _api_error(request, ApiError(exc.status_code, code, detail, exc.headers or None))


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", exc_info=exc)
    return await _api_error(
        request, ApiError(500, "internal_error", "the token server hit an unexpected error")
    )


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The app's LiveKit clients: their aiohttp session must be created inside the loop.
        clients = LiveKitClients(settings)
        app.state.lkapi = lkapi = clients.api
        # the lock around each room's check-and-create: Redis-backed when REDIS_URL is set
        # (api mode: the only one where this endpoint dispatches), else in this process
        room_lock: RoomLock = (
            room_lock_for(settings)
            if settings.dispatch_mode is DispatchMode.API
            else InProcessRoomLock(lock_wait_seconds(settings))
        )
        app.state.room_lock = room_lock
        app.state.dispatcher = dispatcher = Dispatcher(settings, clients, room_lock)
        app.state.follower = None
        if settings.dispatch_mode is DispatchMode.API and settings.dispatch_retry:
            app.state.follower = DispatchFollower(settings, lkapi, dispatcher)
            app.state.follower.start()
        try:
            yield
        finally:
            if app.state.follower is not None:
                await app.state.follower.close()
            await room_lock.close()
            await clients.aclose()
            metrics.process_exited(os.getpid())
            # uvicorn re-raises SIGTERM once the app has stopped, which ends the process before
            # `atexit`: write the shutdown's lines (each followed dispatch's fate) now
            flush_logs()

    routes = [
        Route(settings.path, issue_token, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route(OPENAPI_PATH, openapi_route, methods=["GET"]),
    ]
    if settings.metrics:
        routes.append(Route(METRICS_PATH, metrics_route, methods=["GET"]))
    app = Starlette(
        routes=routes,
        middleware=_middleware(settings, routes),
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` and multi-worker runs: each worker reads the environment."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
