"""Prometheus metrics from the real endpoint process: what a scrape shows after real requests,
real LiveKit API calls and real dispatch fates."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from local_stack import LiveKitServer, LocalStack, TokenServer
from tests.conftest import TokenServerFactory, auth_headers

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TOKEN_ROUTE = "/livekit/token"


def scrape(server: TokenServer) -> Samples:
    resp = httpx.get(f"{server.base_url}/metrics", headers=auth_headers(server), timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_counted(samples: Samples, route: str, outcome: str) -> float:
    return value(samples, "token_server_requests_total", route=route, outcome=outcome)


def livekit_calls(samples: Samples, call: str) -> float:
    return value(samples, "token_server_livekit_api_duration_seconds_count", call=call, result="ok")


def wait_for(server: TokenServer, check: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(server)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"no {what} in the metrics within 60 s"
        time.sleep(0.25)


def post(server: TokenServer, body: object, **headers: str) -> httpx.Response:
    return httpx.post(
        server.endpoint, json=body, headers={**auth_headers(server), **headers}, timeout=30
    )


def test_metrics_need_the_api_key(token_server: TokenServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = httpx.get(f"{token_server.base_url}/metrics", headers=headers, timeout=30)
        assert resp.status_code == 401
        assert resp.json()["error"] == "unauthorized"
        assert "token_server_" not in resp.text
    assert scrape(token_server)  # with the key


def test_requests_are_counted_by_route_and_outcome(token_server: TokenServer) -> None:
    before = scrape(token_server)
    assert post(token_server, {"room_name": str(uuid.uuid4())}).status_code == 200
    bad = httpx.post(
        token_server.endpoint,
        content=b"{nope",
        headers={**auth_headers(token_server), "Content-Type": "application/json"},
        timeout=30,
    )
    assert bad.status_code == 400
    unauthorized = httpx.post(token_server.endpoint, json={}, timeout=30)
    assert unauthorized.status_code == 401
    for n in range(3):  # a scan of made-up paths grows no label
        assert httpx.get(f"{token_server.base_url}/scan-{n}", timeout=30).status_code == 404
    after = scrape(token_server)

    def grew(route: str, outcome: str) -> float:
        return requests_counted(after, route, outcome) - requests_counted(before, route, outcome)

    assert grew(TOKEN_ROUTE, "ok") == 1
    assert grew(TOKEN_ROUTE, "invalid_json") == 1
    assert grew(TOKEN_ROUTE, "unauthorized") == 1
    assert grew("other", "not_found") == 3
    assert not any("scan-" in dict(labels).get("route", "") for _, labels in after)
    count = "token_server_request_duration_seconds_count"
    assert value(after, count, route=TOKEN_ROUTE) - value(before, count, route=TOKEN_ROUTE) == 3
    # the scrape itself is counted once it is answered
    assert requests_counted(after, "/metrics", "ok") >= 1


def test_each_livekit_call_of_a_dispatch_is_timed(token_server: TokenServer) -> None:
    before = scrape(token_server)
    room = str(uuid.uuid4())
    assert post(token_server, {"room_name": room}).status_code == 200
    assert post(token_server, {"room_name": room}).status_code == 200  # a retry: no new dispatch
    after = scrape(token_server)
    # the first request: create_room (with the agent in the room's dispatches), list_dispatch;
    # the retry finds the dispatch this process follows without asking LiveKit
    assert livekit_calls(after, "create_room") - livekit_calls(before, "create_room") >= 1
    assert livekit_calls(after, "list_dispatch") - livekit_calls(before, "list_dispatch") >= 1
    created = "token_server_dispatches_created_total"
    assert value(after, created, reason="request") - value(before, created, reason="request") == 1


def test_an_untaken_dispatch_is_dispatched_again_then_expires(
    start_token_server: TokenServerFactory,
) -> None:
    """No worker runs under this name: the follower dispatches again until its deadline."""
    server = start_token_server(
        AGENT_NAME="nobody-runs-this-agent",
        DISPATCH_RETRY_DEADLINE_SECONDS="4",
        DISPATCH_RETRY_INTERVAL_SECONDS="0.5",
    )
    assert post(server, {"room_name": str(uuid.uuid4())}).status_code == 200
    followed = scrape(server)
    assert value(followed, "token_server_dispatches_followed") == 1
    samples = wait_for(
        server,
        lambda s: value(s, "token_server_dispatch_fates_total", fate="expired") == 1,
        "expired fate",
    )
    assert value(samples, "token_server_dispatches_created_total", reason="again") >= 1
    assert value(samples, "token_server_dispatch_fates_total", fate="taken") == 0
    assert value(samples, "token_server_dispatches_followed") == 0


@pytest.mark.e2e
def test_a_taken_dispatch_counts_its_wait(
    stack: LocalStack, livekit_server: LiveKitServer, start_token_server: TokenServerFactory
) -> None:
    # a worker of its own: the session's shared one may be full of other tests' calls
    agent = stack.start_agent(
        livekit_server,
        "metrics-agent",
        env={"AGENT_PROVIDER": "offline", "AGENT_TEXT_ONLY": "1", "AGENT_IDLE_PROCESSES": "1"},
    )
    server = start_token_server(AGENT_NAME=agent.agent_name)
    assert post(server, {"room_name": str(uuid.uuid4())}).status_code == 200
    taken = "token_server_dispatch_fates_total"
    after = wait_for(server, lambda s: value(s, taken, fate="taken") == 1, "taken fate")
    assert value(after, "token_server_dispatch_taken_seconds_count") == 1
    assert value(after, "token_server_dispatch_taken_seconds_sum") > 0
    assert value(after, taken, fate="expired") == 0


async def test_several_workers_report_together(start_token_server: TokenServerFactory) -> None:
    """Whichever worker answers the scrape, it reports every worker's requests."""
    server = start_token_server(DISPATCH_MODE="none", TOKEN_SERVER_WORKERS="2")

    async def post_once() -> None:
        async with httpx.AsyncClient(timeout=30) as client:  # a new connection each time
            resp = await client.post(server.endpoint, json={"room_name": str(uuid.uuid4())})
        assert resp.status_code == 200, resp.text

    def pids() -> set[str]:
        return {
            line.split('"pid":')[1].split(",")[0]
            for line in server.process.log_text().splitlines()
            if '"event":"request"' in line
        }

    # until both workers have answered: the kernel may hand many connections in a row to one
    sent = 0
    while sent < 400 and len(pids()) < 2:
        await asyncio.gather(*(post_once() for _ in range(20)))
        sent += 20
    assert len(pids()) >= 2, f"one process answered all {sent} requests"
    for _ in range(6):  # scrapes land on either worker; each shows the sum
        samples = await asyncio.to_thread(scrape, server)
        assert requests_counted(samples, TOKEN_ROUTE, "ok") == sent


def test_metrics_can_be_turned_off(start_token_server: TokenServerFactory) -> None:
    server = start_token_server(DISPATCH_MODE="none", TOKEN_SERVER_METRICS="0")
    resp = httpx.get(f"{server.base_url}/metrics", timeout=30)
    assert resp.status_code == 404
    assert post(server, {"room_name": str(uuid.uuid4())}).status_code == 200
