"""Mint the caller's LiveKit JWT: one room, join + publish + subscribe + data, nothing admin."""

from __future__ import annotations

import datetime
import secrets

from livekit import api

from token_server.config import Settings
from token_server.token_request import TokenRequest


def participant_identity(request: TokenRequest) -> str:
    """The caller's own identity if it sent one, else its name plus a random suffix.

    LiveKit disconnects a participant when another joins the room with the same identity. The
    platform sends the same `participant_name` ("simulated_user") on every call and may retry a
    token request; a fresh suffix per token means a retry never kicks a connection that is live.
    """
    if request.participant_identity:
        return request.participant_identity
    return f"{request.participant_name}-{secrets.token_hex(4)}"


def mint_token(
    settings: Settings,
    request: TokenRequest,
    identity: str,
    room_dispatch: api.RoomAgentDispatch | None = None,
) -> str:
    """HS256 JWT signed with the API secret; `room_dispatch` rides in the token in `token` mode."""
    grants = api.VideoGrants(
        room_join=True,
        room=request.room_name,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=True,
    )
    token = (
        api.AccessToken(settings.api_key, settings.api_secret)
        .with_identity(identity)
        .with_name(request.participant_name)
        .with_ttl(datetime.timedelta(seconds=settings.token_ttl_seconds))
        .with_grants(grants)
    )
    if request.participant_metadata:
        token = token.with_metadata(request.participant_metadata)
    if request.participant_attributes:
        token = token.with_attributes(request.participant_attributes)
    if room_dispatch is not None:
        token = token.with_room_config(api.RoomConfiguration(agents=[room_dispatch]))
    return token.to_jwt()
