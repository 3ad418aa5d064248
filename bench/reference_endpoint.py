"""Reference endpoints the token benchmark compares the kit's endpoint with. For comparison only:
do not deploy any of these.

- `tutorial_app`: a token endpoint the way tutorials write it (column (c) of the mint part): parse
  the JSON, mint with AccessToken, answer {serverUrl, participantToken}. No auth, no validation,
  no request log.
- `floor_app`: a Starlette route answering a constant small JSON (column (d)): what one uvicorn
  worker costs per request before any token work.
- `tutorial_dispatch_app`: a tutorial-style endpoint that also dispatches the agent, with a new
  LiveKitAPI client (and aiohttp session) per request and no idempotency check (two requests for
  one room send two agents). Kept for comparisons of the dispatch path; not measured by default.

Serve one with uvicorn, e.g. `uvicorn bench.reference_endpoint:tutorial_app` (LIVEKIT_URL,
LIVEKIT_API_KEY and LIVEKIT_API_SECRET in the environment; AGENT_NAME for the dispatching one).
"""

import json
import os

from livekit import api
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def tutorial_jwt(
    name: str, room: str, api_key: str | None = None, api_secret: str | None = None
) -> str:
    """The token as tutorials mint it: the SDK's builder, per request (key pair from the
    environment unless given)."""
    return (
        api.AccessToken(api_key, api_secret)
        .with_identity(name)
        .with_name(name)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


async def tutorial_token(request: Request) -> JSONResponse:
    body = await request.json()
    room = body["room_name"]
    name = body.get("participant_name", "user")
    jwt = tutorial_jwt(name, room)
    return JSONResponse({"serverUrl": os.environ["LIVEKIT_URL"], "participantToken": jwt})


async def floor(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def tutorial_dispatch_token(request: Request) -> JSONResponse:
    body = await request.json()
    room = body["room_name"]
    name = body.get("participant_name", "user")
    lkapi = api.LiveKitAPI()
    await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(
            agent_name=os.environ["AGENT_NAME"], room=room, metadata=json.dumps(body)
        )
    )
    await lkapi.aclose()
    jwt = tutorial_jwt(name, room)
    return JSONResponse({"token": jwt, "serverUrl": os.environ["LIVEKIT_URL"]})


tutorial_app = Starlette(routes=[Route("/livekit/token", tutorial_token, methods=["POST"])])
floor_app = Starlette(routes=[Route("/livekit/token", floor, methods=["POST"])])
tutorial_dispatch_app = Starlette(
    routes=[Route("/livekit/token", tutorial_dispatch_token, methods=["POST"])]
)
