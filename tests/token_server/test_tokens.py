"""The endpoint's tokens are LiveKit's SDK's tokens, byte for byte.

`mint_token` skips the SDK's per-token work but must write the very claims `AccessToken.to_jwt`
writes; these compare the two for the same request in the same second. That livekit-server
accepts them is shown by the endpoint tests that join rooms with them.
"""

from __future__ import annotations

import datetime
import json

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit import api

from token_server.config import Settings
from token_server.token_request import TokenRequest
from token_server.tokens import CALLER_GRANTS, mint_token, sign_hs256

SETTINGS = Settings(
    livekit_url="ws://127.0.0.1:7880",
    livekit_public_url="ws://127.0.0.1:7880",
    api_key="APIkey123",
    api_secret="a-secret-of-at-least-thirty-two-characters",
    token_ttl_seconds=900,
)


def request(
    room: str = "room-1",
    name: str = "simulated_user",
    metadata: str | None = None,
    attributes: dict[str, str] | None = None,
) -> TokenRequest:
    return TokenRequest(room, name, None, metadata, attributes or {}, None)


def sdk_token(
    req: TokenRequest, identity: str, room_dispatch: api.RoomAgentDispatch | None = None
) -> str:
    """What the endpoint used to mint, with LiveKit's SDK as its docs show."""
    grants = api.VideoGrants(
        room_join=True,
        room=req.room_name,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=True,
    )
    token = (
        api.AccessToken(SETTINGS.api_key, SETTINGS.api_secret)
        .with_identity(identity)
        .with_name(req.participant_name)
        .with_ttl(datetime.timedelta(seconds=SETTINGS.token_ttl_seconds))
        .with_grants(grants)
    )
    if req.participant_metadata:
        token = token.with_metadata(req.participant_metadata)
    if req.participant_attributes:
        token = token.with_attributes(req.participant_attributes)
    if room_dispatch is not None:
        token = token.with_room_config(api.RoomConfiguration(agents=[room_dispatch]))
    return token.to_jwt()


def assert_same_token(
    req: TokenRequest, identity: str, room_dispatch: api.RoomAgentDispatch | None = None
) -> None:
    for _ in range(3):  # the SDK reads the clock twice: retry a token that straddled a second
        expected = sdk_token(req, identity, room_dispatch)
        claims = jwt.decode(expected, options={"verify_signature": False})
        if claims["exp"] - claims["nbf"] == SETTINGS.token_ttl_seconds:
            break
    ours = mint_token(SETTINGS, req, identity, room_dispatch, now=claims["nbf"])
    assert ours == expected
    verified = api.TokenVerifier(SETTINGS.api_key, SETTINGS.api_secret).verify(ours)
    assert verified.identity == identity
    assert verified.video is not None and verified.video.room == req.room_name


def test_a_platform_token_is_the_sdks() -> None:
    assert_same_token(request(), "simulated_user-0a1b2c3d")


def test_metadata_attributes_and_an_agent_dispatch_are_the_sdks() -> None:
    dispatch = api.RoomAgentDispatch(agent_name="voice", metadata='{"persona": "Ava"}')
    req = request(metadata='{"plan": "gold"}', attributes={"tier": "gold", "lang": "en"})
    assert_same_token(req, "caller-7", dispatch)


def test_the_grants_are_exactly_the_callers() -> None:
    token = mint_token(SETTINGS, request("r-9"), "who", now=1_800_000_000)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["video"] == {
        "roomJoin": True,
        "room": "r-9",
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
    }
    assert (claims["nbf"], claims["exp"]) == (1_800_000_000, 1_800_000_900)
    assert CALLER_GRANTS.room_admin is None and CALLER_GRANTS.room_create is None


names = st.text(min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=150, deadline=None)
@given(
    room=names,
    name=names,
    identity=names,
    metadata=st.none() | st.text(max_size=60),
    attributes=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
def test_any_request_gives_the_sdks_token(
    room: str, name: str, identity: str, metadata: str | None, attributes: dict[str, str]
) -> None:
    assert_same_token(request(room, name, metadata, attributes), identity)


@pytest.mark.parametrize("room", ['quote"and\\slash', "ünïcödé-Ω", "emoji-🎧", "</script>"])
def test_characters_json_escapes_are_the_sdks(room: str) -> None:
    assert_same_token(request(room, name=room), identity=room)
    token = mint_token(SETTINGS, request(room), "x", now=1)
    payload = token.split(".")[1]
    decoded = json.loads(jwt.utils.base64url_decode(payload))
    assert decoded["video"]["room"] == room


@settings(max_examples=100, deadline=None)
@given(
    claims=st.dictionaries(
        st.text(max_size=10),
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        max_size=6,
    ),
    secret=st.text(min_size=32, max_size=64),
)
def test_signing_is_pyjwts(claims: dict[str, object], secret: str) -> None:
    assert sign_hs256(claims, secret) == jwt.encode(claims, secret, algorithm="HS256")
