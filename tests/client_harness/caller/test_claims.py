"""Token claims judged without the secret."""

from __future__ import annotations

import base64
import datetime
import json
import time

from livekit import api

from client_harness.caller.claims import check_claims, decode_unverified


def mint(room: str = "r1", ttl: int = 600, join: bool = True, identity: str = "u") -> str:
    grants = api.VideoGrants(room_join=join, room=room)
    token = api.AccessToken("key", "a-secret-that-is-long-enough-for-hs256-32b").with_grants(grants)
    token = token.with_ttl(datetime.timedelta(seconds=ttl))
    if identity:
        token = token.with_identity(identity)
    return token.to_jwt()


def forge(payload: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.sig"


def test_a_good_token_passes() -> None:
    report = check_claims(mint(), "r1")
    assert report.ok, report.problems
    assert report.identity == "u"


def test_wrong_room_is_a_problem() -> None:
    report = check_claims(mint(room="other"), "r1")
    assert not report.ok and "'other'" in report.problems[0]


def test_expired_token() -> None:
    token = mint()
    report = check_claims(token, "r1", now=time.time() + 10_000)
    assert any("expired" in p for p in report.problems)


def test_short_ttl_is_a_warning_only() -> None:
    report = check_claims(mint(ttl=60), "r1")
    assert report.ok and any("expires in" in w for w in report.warnings)


def test_no_room_join() -> None:
    report = check_claims(
        forge({"sub": "u", "exp": time.time() + 900, "video": {"room": "r1"}}), "r1"
    )
    assert any("roomJoin" in p for p in report.problems)


def test_no_video_grant_and_no_identity() -> None:
    report = check_claims(forge({"exp": time.time() + 900}), "r1")
    assert any("no video grant" in p for p in report.problems)
    assert any("identity" in p for p in report.problems)


def test_publish_denied() -> None:
    claims = {
        "sub": "u",
        "exp": time.time() + 900,
        "video": {"room": "r1", "roomJoin": True, "canPublish": False},
    }
    assert any("canPublish" in p for p in check_claims(forge(claims), "r1").problems)


def test_not_yet_valid() -> None:
    claims = {
        "sub": "u",
        "nbf": time.time() + 3600,
        "exp": time.time() + 7200,
        "video": {"room": "r1", "roomJoin": True},
    }
    assert any("nbf" in p for p in check_claims(forge(claims), "r1").problems)


def test_not_a_jwt() -> None:
    report = check_claims("not-a-token", "r1")
    assert not report.ok and "not a JWT" in report.problems[0]
    assert "not base64url" in check_claims("a.!!!.c", "r1").problems[0]


def test_room_config_agents_are_visible() -> None:
    token = (
        api.AccessToken("key", "a-secret-that-is-long-enough-for-hs256-32b")
        .with_identity("u")
        .with_grants(api.VideoGrants(room_join=True, room="r1"))
        .with_room_config(
            api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name="bot", metadata="m")])
        )
        .to_jwt()
    )
    assert decode_unverified(token)["video"]["room"] == "r1"
    assert check_claims(token, "r1").dispatched_agents[0]["agentName"] == "bot"
