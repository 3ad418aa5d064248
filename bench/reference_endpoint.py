"""Variant (c) of the benchmark: a token endpoint written the way tutorials show it.

Deliberately plain, for comparison only: a new LiveKitAPI client (and aiohttp session) per
request, no idempotency check, no validation. Do not deploy this.
"""

import json
import os

from livekit import api
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def token(request: Request) -> JSONResponse:
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
    jwt = (
        api.AccessToken()
        .with_identity(name)
        .with_name(name)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )
    return JSONResponse({"token": jwt, "serverUrl": os.environ["LIVEKIT_URL"]})


app = Starlette(routes=[Route("/livekit/token", token, methods=["POST"])])
