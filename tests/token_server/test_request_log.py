"""The request log is written off the request path: a stderr that does not drain (a stuck log
collector, a full pipe) delays the lines, never the answers, and no line is lost."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from local_stack import free_port
from token_server.request_log import _json

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 1500  # each line is ~250 bytes: several times a pipe's 64 KiB buffer


async def _post_all(endpoint: str) -> list[int]:
    limits = httpx.Limits(max_connections=8)
    # No pool timeout: requests queue for the 8 connections however slow the machine is; a stall
    # (the old synchronous logging blocked on the full pipe) is caught by the 120 s bound below.
    timeout = httpx.Timeout(10, pool=None)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def one() -> int:
            resp = await client.post(endpoint, json={"room_name": str(uuid.uuid4())})
            return resp.status_code

        return list(await asyncio.gather(*(one() for _ in range(REQUESTS))))


def test_a_stderr_nobody_reads_does_not_stall_answers() -> None:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "LIVEKIT_URL": "ws://127.0.0.1:9",  # never called: DISPATCH_MODE=none
        "LIVEKIT_API_KEY": "k",
        "LIVEKIT_API_SECRET": "s" * 40,
        "DISPATCH_MODE": "none",
        "TOKEN_SERVER_ALLOW_NO_AUTH": "1",
        "TOKEN_SERVER_PORT": str(port),
        "TOKEN_SERVER_LOAD_DOTENV": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "token_server"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # not read until every answer is in
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.1)
        statuses = asyncio.run(asyncio.wait_for(_post_all(f"{base}/livekit/token"), 120))
        assert statuses == [200] * REQUESTS
    finally:
        proc.terminate()
        assert proc.stderr is not None
        with proc.stderr:
            log = proc.stderr.read().decode()  # drains the pipe: the queued lines follow
        proc.wait(timeout=30)
    lines = [line for line in log.splitlines() if '"event":"request"' in line]
    assert len(lines) == REQUESTS  # every token request (health probes log at DEBUG)


def test_a_request_line_is_written_even_for_a_value_orjson_refuses() -> None:
    """The request line's encoder falls back to json for a lone surrogate (orjson refuses it)
    and to str() for a value neither knows, instead of failing the request it describes."""
    record = {"room": "ok", "odd": "\ud800", "thing": object(), "n": 1}
    line = json.loads(_json(record))
    assert (line["room"], line["odd"], line["n"]) == ("ok", "\ud800", 1)
    assert line["thing"].startswith("<object object")
    assert _json({"room": "é"}) == '{"room":"é"}'
