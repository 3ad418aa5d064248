"""The one place where tests get the real stack: livekit-server, the token endpoint, the agent.

Every fixture starts real processes through `local_stack` (loopback, free ports)
and stops them when its scope ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from client_harness.config import HarnessConfig, stack_config
from local_stack import (
    AgentWorker,
    LiveKitServer,
    LocalStack,
    TokenServer,
)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Owns every process the session starts; logs land in pytest's tmp dir."""
    with LocalStack(log_dir=Path(tmp_path_factory.mktemp("stack-logs"))) as s:
        yield s


@pytest.fixture(scope="session")
def livekit_server(stack: LocalStack) -> LiveKitServer:
    """One real livekit-server (dev mode, loopback) shared by the whole session."""
    return stack.start_livekit()


@pytest.fixture
def own_livekit_server(tmp_path: Path) -> Iterator[LiveKitServer]:
    """A livekit-server for one test only: for tests that stop it on purpose."""
    with LocalStack(log_dir=tmp_path) as s:
        yield s.start_livekit()


TokenServerFactory = Callable[..., TokenServer]


@pytest.fixture(scope="session")
def start_token_server(stack: LocalStack, livekit_server: LiveKitServer) -> TokenServerFactory:
    """Start a token endpoint (a real `python -m token_server` process) with settings overridden.

    Usage: `start_token_server(AGENT_NAME="x", DISPATCH_MODE="api")`; pass `livekit=` to target
    another server. Processes live until the session ends.
    """

    def start(livekit: LiveKitServer | None = None, **env: str) -> TokenServer:
        return stack.start_token_server(livekit or livekit_server, env=env)

    return start


@pytest.fixture(scope="session")
def token_server(start_token_server: TokenServerFactory) -> TokenServer:
    """The default endpoint: api dispatch of agent `test-agent`, one API key."""
    return start_token_server(
        AGENT_NAME="test-agent",
        AGENT_METADATA='{"persona": "test"}',
        TOKEN_SERVER_API_KEYS="test-key-1,test-key-2",
        TOKEN_SERVER_ALLOW_NO_AUTH="0",
    )


def auth_headers(server: TokenServer) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}


# --- the sample agent (issue 3) ---------------------------------------------------------------

TEST_AGENT_NAME = "test-agent"  # the name the `token_server` fixture dispatches


@pytest.fixture(scope="session")
def agent_worker(stack: LocalStack, livekit_server: LiveKitServer) -> AgentWorker:
    """One real `sample-agent start` worker named `test-agent`, registered with the session's
    livekit-server; offline speech, one warm process (the suite shares 2 cores)."""
    return stack.start_agent(
        livekit_server,
        TEST_AGENT_NAME,
        env={"AGENT_PROVIDER": "offline", "AGENT_IDLE_PROCESSES": "1", "AGENT_MAX_CALLS": "4"},
    )


# --- the client harness (issue 4) -------------------------------------------------------------

HARNESS_LOAD_AGENT = "harness-load-agent"
HARNESS_LOAD_CALLS = 10


@pytest.fixture(scope="session")
def harness_config_for(livekit_server: LiveKitServer) -> Callable[..., HarnessConfig]:
    """The platform's connection fields for a token endpoint of this session, with the server's
    API credentials for diagnosis; `fields` override (e.g. agent_join_timeout=3)."""

    def build(server: TokenServer, **fields: object) -> HarnessConfig:
        return stack_config(server, livekit_server, **fields)

    return build


@pytest.fixture(scope="session")
def harness_load_agent(stack: LocalStack, livekit_server: LiveKitServer) -> AgentWorker:
    """A second sample-agent worker sized for the 10-call text-mode test: text-only (its job
    processes load no speech models) and a warm process per call plus a margin, because
    livekit-agents counts each accepted job not yet running as 1/idle of the worker's load."""
    return stack.start_agent(
        livekit_server,
        HARNESS_LOAD_AGENT,
        env={
            "AGENT_PROVIDER": "offline",
            "AGENT_TEXT_ONLY": "1",
            "AGENT_IDLE_PROCESSES": str(HARNESS_LOAD_CALLS + 2),
            "AGENT_MAX_CALLS": str(HARNESS_LOAD_CALLS + 2),
        },
        timeout=240.0,
    )


# --- the harness says who failed (issue 9, part 5) --------------------------------------------


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """A whole stack for one test only (start its livekit-server, token endpoint and agent
    yourself): for tests that kill a component on purpose. Everything stops when the test ends;
    logs land in the test's tmp dir."""
    with LocalStack(log_dir=tmp_path / "own-stack-logs") as s:
        yield s
