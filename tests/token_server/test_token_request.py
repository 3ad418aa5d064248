"""Unit tests of request parsing: pure logic, no server."""

from __future__ import annotations

import json

import pytest

from token_server.errors import ApiError
from token_server.token_request import (
    MAX_BODY_BYTES,
    MAX_PARTICIPANT_NAME,
    MAX_ROOM_NAME,
    REFUSED_CATEGORIES,
    has_refused_character,
    parse_body,
    parse_token_request,
)


def test_platform_shape_keeps_custom_fields() -> None:
    req = parse_token_request(
        {
            "room_name": "0b6c7a1e-0000-4000-8000-000000000001",
            "participant_name": "simulated_user",
            "agent_variant": "sales",
            "language": "en",
            "nested": {"a": [1, 2]},
        }
    )
    assert req.room_name == "0b6c7a1e-0000-4000-8000-000000000001"
    assert req.participant_name == "simulated_user"
    assert req.participant_identity is None
    assert req.agent is None
    assert req.custom == {"agent_variant": "sales", "language": "en", "nested": {"a": [1, 2]}}


def test_standard_livekit_shape_snake_and_camel() -> None:
    snake = parse_token_request(
        {
            "room_name": "r1",
            "participant_identity": "id-1",
            "participant_name": "Ann",
            "participant_metadata": '{"x": 1}',
            "participant_attributes": {"tier": "gold"},
            "room_config": {"agents": [{"agent_name": "voice", "metadata": "hi"}]},
        }
    )
    camel = parse_token_request(
        {
            "roomName": "r1",
            "participantIdentity": "id-1",
            "participantName": "Ann",
            "participantMetadata": '{"x": 1}',
            "participantAttributes": {"tier": "gold"},
            "roomConfig": {"agents": [{"agentName": "voice", "metadata": "hi"}]},
        }
    )
    assert snake == camel
    assert snake.participant_identity == "id-1"
    assert snake.agent is not None
    assert (snake.agent.agent_name, snake.agent.metadata) == ("voice", "hi")
    assert snake.participant_attributes == {"tier": "gold"}
    assert snake.custom == {}


def test_agent_metadata_object_is_sent_on_as_json() -> None:
    req = parse_token_request(
        {"room_config": {"agents": [{"agent_name": "a", "metadata": {"k": 1}}]}}
    )
    assert req.agent is not None and json.loads(req.agent.metadata or "") == {"k": 1}


def test_missing_room_name_is_generated_and_unique() -> None:
    a, b = parse_token_request({}), parse_token_request({})
    assert a.room_name.startswith("room-") and b.room_name.startswith("room-")
    assert a.room_name != b.room_name
    assert a.participant_name == "user"


def test_empty_body_is_an_empty_object() -> None:
    assert parse_body(b"") == {}
    assert parse_body(b"  \n") == {}


@pytest.mark.parametrize(
    ("raw", "code", "status"),
    [
        (b"{not json", "invalid_json", 400),
        (b"\xff\xfe", "invalid_json", 400),
        (b"[1, 2]", "invalid_body", 400),
        (b'"room"', "invalid_body", 400),
        (b"{" + b" " * MAX_BODY_BYTES + b"}", "body_too_large", 413),
    ],
)
def test_bad_bodies(raw: bytes, code: str, status: int) -> None:
    with pytest.raises(ApiError) as err:
        parse_body(raw)
    assert (err.value.code, err.value.status) == (code, status)


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"room_name": 5}, "invalid_field", "room_name"),
        ({"room_name": ""}, "invalid_room_name", "room_name"),
        ({"room_name": "   "}, "invalid_room_name", "room_name"),
        ({"room_name": "x" * (MAX_ROOM_NAME + 1)}, "invalid_room_name", "limit"),
        ({"room_name": "bad\nroom"}, "invalid_room_name", "control"),
        ({"room_name": "zero\u200bwidth"}, "invalid_room_name", "control"),
        ({"participant_name": ""}, "invalid_participant_name", "participant_name"),
        (
            {"participant_name": "n" * (MAX_PARTICIPANT_NAME + 1)},
            "invalid_participant_name",
            "limit",
        ),
        ({"participant_name": "a\x00b"}, "invalid_participant_name", "control"),
        ({"participant_name": ["x"]}, "invalid_field", "participant_name"),
        ({"participant_identity": "id\tx"}, "invalid_participant_identity", "control"),
        ({"participant_metadata": {"a": 1}}, "invalid_field", "participant_metadata"),
        ({"participant_attributes": {"a": 1}}, "invalid_field", "participant_attributes"),
        ({"participant_attributes": "a=b"}, "invalid_field", "participant_attributes"),
        ({"room_config": "voice"}, "invalid_field", "room_config"),
        ({"room_config": {"agents": "voice"}}, "invalid_field", "room_config.agents"),
        ({"room_config": {"agents": [{"agent_name": ""}]}}, "invalid_agent_name", "agent_name"),
        ({"room_config": {"agents": [{"metadata": "x"}]}}, "invalid_field", "agent_name"),
        (
            {"room_config": {"agents": [{"agent_name": "a"}, {"agent_name": "b"}]}},
            "invalid_field",
            "one agent",
        ),
        ({"room_name": "a", "roomName": "b"}, "conflicting_fields", "disagree"),
    ],
)
def test_bad_fields_name_what_was_wrong(body: dict, code: str, names: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_token_request(body)
    assert err.value.status == 400
    assert err.value.code == code
    assert names in err.value.detail


def test_same_value_under_both_spellings_is_fine() -> None:
    assert parse_token_request({"room_name": "a", "roomName": "a"}).room_name == "a"


def test_every_refused_character_is_refused_by_the_check_itself() -> None:
    """The endpoint's own check, on every code point: each one of a refused category is caught
    (its fast path must not let one through), and plain letters are not."""
    import sys
    import unicodedata

    missed = [
        hex(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in REFUSED_CATEGORIES
        and not has_refused_character(f"name{chr(cp)}x")
    ]
    assert missed == []
    assert not has_refused_character("simulated_user café 東京 😀")
