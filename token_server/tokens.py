"""Mint the caller's LiveKit JWT: one room, join + publish + subscribe + data, nothing admin.

The claims are the ones LiveKit's SDK (`AccessToken.to_jwt`) writes, key for key and in its order,
so the tokens are byte-for-byte the SDK's (tests/token_server/test_tokens.py holds them equal).
What differs is the work per token: the SDK rebuilds its claim set with `dataclasses.asdict` and a
deep copy each time, which made minting the endpoint's largest cost; here the grants, which are the
same for every caller, are rendered by the SDK once, and each token only fills in its room, names
and times. Signing is HS256 as PyJWT does it (its header, its compact JSON, unpadded base64url,
HMAC-SHA256), minus PyJWT's per-call key checks and header encoding: about a third of the time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import lru_cache
from typing import Any

from google.protobuf.json_format import MessageToDict
from livekit import api
from livekit.api.access_token import Claims

from token_server.config import Settings
from token_server.ids import random_hex
from token_server.token_request import TokenRequest

# What every caller may do, in its room only (the room is filled in per token).
CALLER_GRANTS = api.VideoGrants(
    room_join=True, room="-", can_publish=True, can_subscribe=True, can_publish_data=True
)
# The SDK's own rendering of those grants (its key names, its order, its dropped defaults).
_VIDEO_CLAIM: dict[str, Any] = Claims(video=CALLER_GRANTS).asdict()["video"]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# PyJWT's HS256 header, as it writes it (sorted keys, compact), encoded once.
_HEADER = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
_COMPACT = json.JSONEncoder(separators=(",", ":"))


@lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """HMAC-SHA256 with the key already set up: copying it per token skips the key's padding and
    hashing, which were a third of signing."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def sign_hs256(claims: dict[str, Any], secret: str) -> str:
    """A compact JWS of `claims`, byte-for-byte what `jwt.encode(claims, secret, "HS256")` gives."""
    signing_input = _HEADER + b"." + _b64(_COMPACT.encode(claims).encode())
    mac = _keyed(secret).copy()
    mac.update(signing_input)
    signature = mac.digest()
    return (signing_input + b"." + _b64(signature)).decode()


def participant_identity(request: TokenRequest) -> str:
    """The caller's own identity if it sent one, else its name plus a random suffix.

    LiveKit disconnects a participant when another joins the room with the same identity. The
    platform sends the same `participant_name` ("simulated_user") on every call and may retry a
    token request; a fresh suffix per token means a retry never kicks a connection that is live.
    """
    if request.participant_identity:
        return request.participant_identity
    return f"{request.participant_name}-{random_hex(8)}"


def mint_token(
    settings: Settings,
    request: TokenRequest,
    identity: str,
    room_dispatch: api.RoomAgentDispatch | None = None,
    now: int | None = None,
) -> str:
    """HS256 JWT signed with the API secret; `room_dispatch` rides in the token in `token` mode.
    `now` (Unix seconds) is for tests that compare against the SDK's token of the same second."""
    issued = int(time.time()) if now is None else now
    # the SDK's order: name, metadata, video, attributes, roomConfig, then sub, iss, nbf, exp
    claims: dict[str, Any] = {"name": request.participant_name}
    if request.participant_metadata:
        claims["metadata"] = request.participant_metadata
    claims["video"] = {**_VIDEO_CLAIM, "room": request.room_name}
    if request.participant_attributes:
        claims["attributes"] = request.participant_attributes
    if room_dispatch is not None:
        claims["roomConfig"] = MessageToDict(api.RoomConfiguration(agents=[room_dispatch]))
    claims["sub"] = identity
    claims["iss"] = settings.api_key
    claims["nbf"] = issued
    claims["exp"] = issued + settings.token_ttl_seconds
    return sign_hs256(claims, settings.api_secret)
