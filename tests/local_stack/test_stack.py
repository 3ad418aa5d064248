"""The stack launcher itself: ports that another process grabs between probe and bind."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from local_stack import LocalStack, processes, stack

pytestmark = pytest.mark.integration


def test_free_ports_avoid_the_ephemeral_range() -> None:
    low, high = processes._ephemeral_range()
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        port = processes.free_port(kind)
        assert not low <= port <= high


def test_a_port_taken_before_the_server_binds_it_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    taken = held.getsockname()[1]
    real = processes.free_port
    probes: list[int] = []

    def clashing(kind: int = socket.SOCK_STREAM) -> int:
        probes.append(kind)
        return taken if len(probes) == 2 else real(kind)  # the RTC TCP port of the first try

    monkeypatch.setattr(stack, "free_port", clashing)
    try:
        with LocalStack(log_dir=tmp_path) as local:
            livekit = local.start_livekit()
            assert httpx.get(livekit.http_url).status_code == 200
            assert len(probes) == 6  # three ports, twice
            assert len(local._children) == 1  # the failed first try was stopped and dropped
            logs = "".join(p.read_text() for p in tmp_path.glob("livekit-server-*.log"))
            assert "address already in use" in logs
    finally:
        held.close()


def test_an_exported_kit_setting_does_not_change_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a test starts is what it asked for, whatever the shell running pytest exports."""
    for name, value in {
        "DISPATCH_MODE": "none",
        "TOKEN_TTL_SECONDS": "61",
        "AGENT_JOB_EXECUTOR": "thread",
        "LIVEKIT_API_SECRET": "exported-secret",
    }.items():
        monkeypatch.setenv(name, value)
    with LocalStack(log_dir=tmp_path) as local:
        livekit = local.start_livekit()
        endpoint = local.start_token_server(livekit, env={"AGENT_NAME": "env-agent"})
        for name in ("DISPATCH_MODE", "TOKEN_TTL_SECONDS", "AGENT_JOB_EXECUTOR"):
            assert name not in endpoint.process.env
        assert endpoint.process.env["LIVEKIT_API_SECRET"] == livekit.api_secret
        body = httpx.post(endpoint.endpoint, json={"room_name": "env-room"}).json()
        assert body["agent_name"] == "env-agent"  # api mode (the default), not the exported `none`
