"""Every response shape the platform accepts or rejects, through the one parser."""

from __future__ import annotations

import json

import pytest

from client_harness.caller.token_answer import (
    KIND_HTML,
    KIND_HTTP_STATUS,
    KIND_NO_TOKEN,
    KIND_NOT_JSON,
    KIND_SERVER_URL,
    NO_TOKEN_MESSAGE,
    TOKEN_FIELDS,
    TokenEndpointError,
    parse_token_response,
)

JSON = "application/json"
CONFIGURED = "wss://configured.example.com"


def parse(body: object, status: int = 200, content_type: str = JSON, url: str = CONFIGURED):
    text = body if isinstance(body, str) else json.dumps(body)
    return parse_token_response(status, content_type, text.encode(), url)


def fails(body: object, status: int = 200, content_type: str = JSON, url: str = CONFIGURED):
    with pytest.raises(TokenEndpointError) as info:
        parse(body, status, content_type, url)
    return info.value


@pytest.mark.parametrize("name", TOKEN_FIELDS)
def test_every_accepted_token_field(name: str) -> None:
    result = parse({name: "a.b.c"})
    assert (result.token, result.token_field) == ("a.b.c", name)


def test_token_field_precedence_follows_the_platform_order() -> None:
    result = parse({"access_token": "late", "participantToken": "early", "token": ""})
    assert result.token == "early"


@pytest.mark.parametrize("name", ["serverUrl", "server_url"])
def test_server_url_in_response_overrides_livekit_url(name: str) -> None:
    result = parse({"token": "t", name: "wss://from-response.example.com"})
    assert result.server_url == "wss://from-response.example.com"
    assert result.server_url_source == f"response field {name}"


def test_livekit_url_used_when_response_has_no_server_url() -> None:
    result = parse({"token": "t"})
    assert (result.server_url, result.server_url_source) == (CONFIGURED, "livekit_url (config)")


@pytest.mark.parametrize("name", ["roomName", "room_name"])
def test_room_name_fields(name: str) -> None:
    assert parse({"token": "t", name: "r1"}).room_name == "r1"


def test_room_name_absent_is_fine() -> None:
    assert parse({"token": "t"}).room_name is None


def test_the_platforms_documented_example_is_accepted() -> None:
    result = parse({"token": "eyJ.x.y", "serverUrl": "wss://lk.example.com", "room_name": "u"})
    assert (result.token, result.server_url, result.room_name) == (
        "eyJ.x.y",
        "wss://lk.example.com",
        "u",
    )


def test_the_livekit_standard_shape_is_accepted() -> None:
    result = parse({"server_url": "wss://lk.example.com", "participant_token": "p.q.r"})
    assert (result.token, result.server_url) == ("p.q.r", "wss://lk.example.com")


def test_loopback_ws_server_url_is_accepted() -> None:
    assert parse({"token": "t", "serverUrl": "ws://127.0.0.1:7880"}).server_url.startswith("ws://")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": ""},
        {"token": "   "},
        {"token": None},
        {"token": 123},
        {"token": {"jwt": "x"}},
        {"jwt": "a.b.c"},
        {"data": {"token": "nested"}},
    ],
)
def test_missing_empty_or_non_string_token_gives_the_platforms_message(body: dict) -> None:
    err = fails(body)
    assert str(err) == NO_TOKEN_MESSAGE
    assert err.kind == KIND_NO_TOKEN
    assert err.fix


def test_no_token_detail_names_what_was_there() -> None:
    assert "'jwt'" in fails({"jwt": "x"}).detail
    assert "non-empty string" in fails({"token": ""}).detail


@pytest.mark.parametrize("body", ["[1, 2]", '"a.b.c"', "null", "42"])
def test_json_that_is_not_an_object_has_no_token(body: str) -> None:
    assert str(fails(body)) == NO_TOKEN_MESSAGE


@pytest.mark.parametrize("body", ["", "token=abc", "{'token': 'x'}", '{"token": '])
def test_non_json_body(body: str) -> None:
    err = fails(body, content_type="text/plain")
    assert err.kind == KIND_NOT_JSON
    assert "did not return JSON" in str(err)


def test_html_page_with_200_status() -> None:
    page = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>x</body></html>"
    err = fails(page, content_type="text/html; charset=utf-8")
    assert err.kind == KIND_HTML
    assert "HTML" in str(err) and "Sign in" in err.detail


def test_html_page_detected_without_content_type() -> None:
    assert fails("<html><body>oops</body></html>", content_type="").kind == KIND_HTML


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 422, 500, 502, 503])
def test_non_2xx_status(status: int) -> None:
    err = fails({"token": "t"}, status=status)
    assert err.kind == KIND_HTTP_STATUS
    assert str(err) == f"Token endpoint answered HTTP {status}"
    assert err.fix


def test_non_2xx_shows_the_endpoints_error_detail() -> None:
    err = fails({"error": "unauthorized", "detail": "missing API key"}, status=401)
    assert "missing API key" in err.detail and "generate_token_headers" in err.fix


def test_500_html_error_page_names_the_page() -> None:
    page = "<html><head><title>502 Bad Gateway</title></head></html>"
    err = fails(page, status=502, content_type="text/html")
    assert "HTML error page" in err.detail and "502 Bad Gateway" in err.detail


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https://lk.example.com", "wss://lk.example.com"),
        ("http://lk.example.com", "ws://lk.example.com"),
        ("ws://lk.example.com", "unencrypted"),
        ("lk.example.com", "not a WebSocket URL"),
    ],
)
def test_wrong_server_url_in_response(url: str, needle: str) -> None:
    err = fails({"token": "t", "serverUrl": url})
    assert err.kind == KIND_SERVER_URL
    assert "serverUrl" in str(err) and needle in err.detail


def test_no_server_url_anywhere() -> None:
    assert fails({"token": "t"}, url="").kind == KIND_SERVER_URL


def test_empty_server_url_falls_back_with_a_warning() -> None:
    result = parse({"token": "t", "serverUrl": ""})
    assert result.server_url == CONFIGURED
    assert any("serverUrl" in w for w in result.warnings)


def test_json_with_wrong_content_type_is_accepted_with_a_warning() -> None:
    result = parse({"token": "t"}, content_type="text/plain")
    assert result.token == "t"
    assert any("application/json" in w for w in result.warnings)


def test_201_is_success() -> None:
    assert parse({"participant_token": "t"}, status=201).token == "t"
