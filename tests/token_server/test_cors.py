"""Browser callers: CORS on the real endpoint process, as a browser's preflight and fetch see it.

The real browser (Chromium with LiveKit's JS SDK) is in tests/e2e/test_browser.py; these pin the
headers it depends on, case by case.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from local_stack import TokenServer
from tests.conftest import TokenServerFactory

pytestmark = pytest.mark.integration

APP = "http://127.0.0.1:5173"
KEY = "browser-key"


def preflight(server: TokenServer, origin: str, headers: str) -> httpx.Response:
    return httpx.options(
        server.endpoint,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
        timeout=30,
    )


def post(server: TokenServer, origin: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        server.endpoint, json=body, headers={"Origin": origin, "X-API-Key": KEY}, timeout=30
    )


@pytest.fixture(scope="module")
def browser_server(start_token_server: TokenServerFactory) -> TokenServer:
    return start_token_server(
        AGENT_NAME="test-agent",
        DISPATCH_MODE="none",
        TOKEN_SERVER_API_KEYS=KEY,
        TOKEN_SERVER_ALLOW_NO_AUTH="0",
        TOKEN_SERVER_CORS_ORIGINS=f"{APP},https://app.example.com",
    )


@pytest.mark.parametrize("headers", ["authorization,content-type", "x-api-key,content-type"])
def test_an_allowed_origin_gets_its_preflight_answered(
    browser_server: TokenServer, headers: str
) -> None:
    resp = preflight(browser_server, APP, headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == APP
    assert "POST" in resp.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in resp.headers["access-control-allow-headers"].split(",")}
    assert set(headers.split(",")) <= allowed
    assert "access-control-allow-credentials" not in resp.headers


def test_a_disallowed_origin_gets_no_allow_header(browser_server: TokenServer) -> None:
    resp = preflight(browser_server, "http://evil.example", "x-api-key,content-type")
    assert resp.status_code == 400
    assert "access-control-allow-origin" not in resp.headers
    # a browser would not send the POST; a script that does gets no header the browser trusts
    answer = post(browser_server, "http://evil.example", {"room_name": str(uuid.uuid4())})
    assert "access-control-allow-origin" not in answer.headers


def test_a_header_outside_the_list_is_refused(browser_server: TokenServer) -> None:
    resp = preflight(browser_server, APP, "x-api-key,x-something-else")
    assert resp.status_code == 400
    assert "x-something-else" not in resp.headers.get("access-control-allow-headers", "").lower()


def test_answers_and_errors_both_reach_the_page(browser_server: TokenServer) -> None:
    """The token, and the 4xx the SDK must show the user, are readable by the allowed page."""
    ok = post(browser_server, APP, {"room_name": str(uuid.uuid4())})
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()

    bad = httpx.post(
        browser_server.endpoint,
        content=b"{not json",
        headers={"Origin": APP, "X-API-Key": KEY, "Content-Type": "application/json"},
        timeout=30,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_json"
    assert bad.headers["access-control-allow-origin"] == APP
    unauthorized = httpx.post(browser_server.endpoint, json={}, headers={"Origin": APP}, timeout=30)
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == APP


def test_agent_refusal_reaches_an_allowed_page(start_token_server: TokenServerFactory) -> None:
    server = start_token_server(
        AGENT_NAME="test-agent",
        DISPATCH_MODE="token",
        TOKEN_SERVER_API_KEYS=KEY,
        TOKEN_SERVER_ALLOW_NO_AUTH="0",
        TOKEN_SERVER_CORS_ORIGINS=APP,
    )
    resp = post(
        server,
        APP,
        {"room_name": "r", "room_config": {"agents": [{"agent_name": "someone-else"}]}},
    )
    assert resp.status_code == 403
    assert resp.json()["error"] == "agent_not_allowed"
    assert resp.headers["access-control-allow-origin"] == APP


def test_star_allows_every_origin_without_credentials(
    start_token_server: TokenServerFactory,
) -> None:
    server = start_token_server(
        DISPATCH_MODE="none",
        TOKEN_SERVER_API_KEYS=KEY,
        TOKEN_SERVER_ALLOW_NO_AUTH="0",
        TOKEN_SERVER_CORS_ORIGINS="*",
    )
    resp = preflight(server, "https://anywhere.example", "x-api-key,content-type")
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers
    answer = post(server, "https://anywhere.example", {"room_name": str(uuid.uuid4())})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"


def test_without_origins_there_is_no_cors_at_all(start_token_server: TokenServerFactory) -> None:
    """The platform calls server to server: unset, the endpoint behaves as before."""
    server = start_token_server(
        DISPATCH_MODE="none", TOKEN_SERVER_API_KEYS=KEY, TOKEN_SERVER_ALLOW_NO_AUTH="0"
    )
    resp = preflight(server, APP, "x-api-key,content-type")
    assert resp.status_code == 405
    assert resp.json()["error"] == "method_not_allowed"
    assert not any(h.startswith("access-control-") for h in resp.headers)
    answer = post(server, APP, {"room_name": str(uuid.uuid4())})
    assert answer.status_code == 200
    assert not any(h.startswith("access-control-") for h in answer.headers)
