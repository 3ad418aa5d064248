"""The kit's local stack (livekit-server, token endpoint, agent worker) as child processes.

Tests, the demo and the benchmarks all start the same real components through this one module:
loopback only, free ports chosen per run (so two runs can share a machine), every child in its own
process group and stopped on exit, including on Ctrl-C or a failed start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from local_stack.errors import StackError
from local_stack.livekit_binary import find_livekit_server, find_redis_server
from local_stack.processes import ChildProcess, free_port

T = TypeVar("T")


@dataclass(frozen=True)
class RedisServer:
    """A running redis-server: what livekit-server nodes share, and the token server's locks."""

    url: str  # redis://127.0.0.1:PORT
    address: str  # 127.0.0.1:PORT, as livekit-server's `redis.address` takes it
    process: ChildProcess = field(repr=False, compare=False)


@dataclass(frozen=True)
class LiveKitServer:
    """How to reach a running livekit-server."""

    url: str  # ws://127.0.0.1:PORT — what clients and agents connect to
    http_url: str  # http://127.0.0.1:PORT — the server API (twirp) base
    api_key: str
    api_secret: str
    process: ChildProcess = field(repr=False, compare=False)

    def env(self) -> dict[str, str]:
        """The variables every LiveKit SDK reads."""
        return {
            "LIVEKIT_URL": self.url,
            "LIVEKIT_API_KEY": self.api_key,
            "LIVEKIT_API_SECRET": self.api_secret,
        }


@dataclass(frozen=True)
class TokenServer:
    base_url: str
    endpoint: str  # full URL of the token route
    api_key: str | None
    livekit_url: str  # LIVEKIT_URL: the server it dispatches through
    public_url: str  # the `serverUrl` callers get (LIVEKIT_PUBLIC_URL, else LIVEKIT_URL)
    process: ChildProcess = field(repr=False, compare=False)


@dataclass(frozen=True)
class AgentWorker:
    """A running `sample-agent` worker, registered with a livekit-server under `agent_name`."""

    agent_name: str
    health_url: str  # the worker's own HTTP health endpoint
    livekit_url: str  # the server it registered with
    process: ChildProcess = field(repr=False, compare=False)


ClusterPart = RedisServer | LiveKitServer | TokenServer | AgentWorker


@dataclass(frozen=True)
class Cluster:
    """LiveKit's own way to scale out, on loopback: N livekit-server nodes sharing one
    redis-server (one key pair), M agent workers (worker i registered with node i % N) and K
    token-server replicas (replica j dispatches through node j % N and hands callers that node
    as `serverUrl`)."""

    redis: RedisServer | None  # None: one node and one replica, nothing to share
    nodes: tuple[LiveKitServer, ...]
    token_servers: tuple[TokenServer, ...]
    workers: tuple[AgentWorker, ...]
    agent_name: str

    def node_for(self, part: TokenServer | AgentWorker) -> LiveKitServer:
        """The node a replica dispatches through, or a worker registered with."""
        return next(n for n in self.nodes if n.url == part.livekit_url)

    def processes(self) -> list[ChildProcess]:
        """Every process of the cluster, in start order."""
        parts: list[ClusterPart] = []
        parts += [self.redis] if self.redis else []
        parts += [*self.nodes, *self.token_servers, *self.workers]
        return [part.process for part in parts]


# The kit's own settings (see .env.example): unless told to inherit them (the demo, which runs the
# kit as the user's shell configures it), a child gets only what its start sets, so a variable
# exported in the shell (DISPATCH_MODE=none, AGENT_JOB_EXECUTOR=thread, ...) cannot silently
# change the stack a test or a benchmark runs.
_KIT_PREFIXES = ("AGENT_", "DISPATCH_", "TOKEN_", "HARNESS_")
_KIT_NAMES = frozenset(
    {"LIVEKIT_URL", "LIVEKIT_PUBLIC_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "REDIS_URL"}
    | {"ALLOWED_AGENT_NAMES", "LIVEKIT_CONFIG", "LIVEKIT_KEYS"}
)


def _base_env(inherit_kit_settings: bool) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if inherit_kit_settings or (name not in _KIT_NAMES and not name.startswith(_KIT_PREFIXES))
    }
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Nothing in the stack may reach a model hub.
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


class LocalStack:
    """Owns every child it starts; `close()` (or leaving the `with`) stops them in reverse order."""

    def __init__(self, log_dir: Path | None = None, inherit_kit_settings: bool = False) -> None:
        self._inherit = inherit_kit_settings
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="livekit-kit-")
            log_dir = Path(self._tmp.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self._children: list[ChildProcess] = []

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._children:
            self._children.pop().stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> ChildProcess:
        child = ChildProcess(name, argv, env, self.log_dir)
        self._children.append(child)
        return child

    def stop(self, child: ChildProcess) -> None:
        child.stop()
        if child in self._children:
            self._children.remove(child)

    def _retrying_port_clashes(self, start: Callable[[], T], attempts: int = 4) -> T:
        """Run `start`; if its child lost a port to another process (the race between probing
        a free port and binding it), stop what it spawned and try again with new ports."""
        for attempt in range(attempts):
            before = len(self._children)
            try:
                return start()
            except StackError as exc:
                if "address already in use" not in str(exc).lower() or attempt == attempts - 1:
                    raise
                while len(self._children) > before:
                    self._children.pop().stop()
        raise AssertionError("unreachable")

    def start_redis(self, timeout: float = 30.0) -> RedisServer:
        """redis-server on a free loopback port, in memory only (no dump, no append-only file)."""
        return self._retrying_port_clashes(functools.partial(self._start_redis, timeout))

    def _start_redis(self, timeout: float) -> RedisServer:
        binary = find_redis_server()
        port = free_port()
        argv = [str(binary), "--port", str(port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        child = self.spawn(f"redis-server-{port}", argv, _base_env(self._inherit))
        child.wait_log(r"Ready to accept connections", timeout)
        return RedisServer(f"redis://127.0.0.1:{port}", f"127.0.0.1:{port}", child)

    def start_livekit(
        self,
        *,
        api_key: str = "devkey",
        api_secret: str | None = None,
        redis: RedisServer | None = None,
        timeout: float = 30.0,
    ) -> LiveKitServer:
        """livekit-server --dev on loopback with its own key pair and free ports; with `redis`,
        a node of the cluster that shares it (give every node the same key pair)."""
        return self._retrying_port_clashes(
            functools.partial(self._start_livekit, api_key, api_secret, redis, timeout)
        )

    def _start_livekit(
        self, api_key: str, api_secret: str | None, redis: RedisServer | None, timeout: float
    ) -> LiveKitServer:
        binary = find_livekit_server()
        api_secret = api_secret or secrets.token_urlsafe(32)
        port, rtc_tcp = free_port(), free_port()
        udp = free_port(socket.SOCK_DGRAM)
        config = (
            f"port: {port}\n"
            f"bind_addresses: [127.0.0.1]\n"
            f"rtc:\n  tcp_port: {rtc_tcp}\n  udp_port: {udp}\n  node_ip: 127.0.0.1\n"
            f"  use_external_ip: false\n"
            f"keys:\n  {api_key}: {api_secret}\n"
            f"logging:\n  level: info\n"
        )
        if redis is not None:
            config += f"redis:\n  address: {redis.address}\n"
        argv = [str(binary), "--dev", "--bind", "127.0.0.1", "--node-ip", "127.0.0.1"]
        env = _base_env(self._inherit)
        env["LIVEKIT_CONFIG"] = config
        env.pop("LIVEKIT_KEYS", None)  # the config's keys, whatever the shell exports
        child = self.spawn(f"livekit-server-{port}", argv, env)
        child.wait_http(f"http://127.0.0.1:{port}/", timeout)
        return LiveKitServer(
            url=f"ws://127.0.0.1:{port}",
            http_url=f"http://127.0.0.1:{port}",
            api_key=api_key,
            api_secret=api_secret,
            process=child,
        )

    def restart_livekit(self, server: LiveKitServer, timeout: float = 30.0) -> LiveKitServer:
        """Start `server`'s livekit-server again, same binary, ports, keys and config, once its
        process has stopped (a test killed it); returns the new handle (same URLs, new process).
        Clients that were connected reconnect to it as they would to a crashed-and-restarted one."""
        old = server.process
        with contextlib.suppress(subprocess.TimeoutExpired):
            old.proc.wait(5)  # a signal just sent may take a moment to land
        if old.alive():
            raise StackError(f"{old.name} is still running: stop or kill it before restarting it")
        self.stop(old)  # reaps it and closes its log, which is kept
        restarts = sum(1 for c in self._children if c.name.startswith(f"{old.name}-restart"))
        child = self.spawn(f"{old.name}-restart{restarts + 1}", old.argv, old.env)
        child.wait_http(server.http_url + "/", timeout)
        return dataclasses.replace(server, process=child)

    def start_token_server(
        self,
        livekit: LiveKitServer,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> TokenServer:
        """`python -m token_server` against `livekit`; `env` overrides its settings."""
        return self._retrying_port_clashes(
            functools.partial(self._start_token_server, livekit, env, timeout)
        )

    def _start_token_server(
        self, livekit: LiveKitServer, env: Mapping[str, str] | None, timeout: float
    ) -> TokenServer:
        port = free_port()
        child_env = _base_env(self._inherit)
        child_env.update(livekit.env())
        child_env.update(
            {
                "TOKEN_SERVER_HOST": "127.0.0.1",
                "TOKEN_SERVER_PORT": str(port),
                "TOKEN_SERVER_ALLOW_NO_AUTH": "1",
                "TOKEN_SERVER_LOAD_DOTENV": "0",
            }
        )
        child_env.update(env or {})
        child = self.spawn(
            f"token-server-{port}", [sys.executable, "-m", "token_server"], child_env
        )
        base = f"http://127.0.0.1:{port}"
        child.wait_http(f"{base}/healthz", timeout)
        path = child_env.get("TOKEN_SERVER_PATH", "/livekit/token")
        keys = [k for k in child_env.get("TOKEN_SERVER_API_KEYS", "").split(",") if k.strip()]
        return TokenServer(
            base_url=base,
            endpoint=base + path,
            api_key=keys[0].strip() if keys else None,
            livekit_url=child_env["LIVEKIT_URL"],
            public_url=child_env.get("LIVEKIT_PUBLIC_URL") or child_env["LIVEKIT_URL"],
            process=child,
        )

    def start_agent(
        self,
        livekit: LiveKitServer,
        agent_name: str,
        *,
        env: Mapping[str, str] | None = None,
        mode: str = "start",
        timeout: float = 120.0,
    ) -> AgentWorker:
        """`python -m sample_agent start` against `livekit`, returned once the server has
        registered it (its "registered worker" log line); `env` overrides its settings."""
        return self._retrying_port_clashes(
            functools.partial(self._start_agent, livekit, agent_name, env, mode, timeout)
        )

    def _start_agent(
        self,
        livekit: LiveKitServer,
        agent_name: str,
        env: Mapping[str, str] | None,
        mode: str,
        timeout: float,
    ) -> AgentWorker:
        port = free_port()
        child_env = _base_env(self._inherit)
        child_env.update(livekit.env())
        child_env.update(
            {
                "AGENT_NAME": agent_name,
                "AGENT_HTTP_HOST": "127.0.0.1",
                "AGENT_HTTP_PORT": str(port),
                "AGENT_LOAD_DOTENV": "0",
            }
        )
        child_env.update(env or {})
        child = self.spawn(
            f"agent-{agent_name}-{port}", [sys.executable, "-m", "sample_agent", mode], child_env
        )
        child.wait_log(r"registered worker", timeout)
        return AgentWorker(
            agent_name=agent_name,
            health_url=f"http://127.0.0.1:{port}/",
            livekit_url=child_env["LIVEKIT_URL"],
            process=child,
        )

    def start_cluster(
        self,
        agent_name: str,
        *,
        nodes: int = 1,
        workers: int = 1,
        replicas: int = 1,
        redis: bool | None = None,
        api_key: str = "devkey",
        api_secret: str | None = None,
        agent_env: Mapping[str, str] | None = None,
        token_env: Mapping[str, str] | None = None,
        agent_timeout: float = 120.0,
        started: Callable[[ClusterPart], None] | None = None,
    ) -> Cluster:
        """Start a `Cluster`: redis-server (when `redis`, by default when there are several nodes
        or replicas), the nodes, the token-server replicas (each given REDIS_URL, AGENT_NAME and
        `token_env`), then the agent workers (`agent_env`). `started` hears of each part as it
        comes up. If any part fails to start, every part already started is stopped before the
        error is raised: a failed start leaves nothing behind.

        Replica j dispatches through node j % N and its callers get that node as `serverUrl`
        (LIVEKIT_PUBLIC_URL): with no load balancer in front of the nodes, this spreads both the
        API calls and the callers' signalling over the nodes, and any node relays either to the
        node that hosts the room. Pass LIVEKIT_PUBLIC_URL in `token_env` to hand out another URL.
        """
        if nodes < 1 or workers < 0 or replicas < 0:
            raise ValueError(
                f"nodes >= 1, workers >= 0, replicas >= 0: {nodes}/{workers}/{replicas}"
            )
        use_redis = redis if redis is not None else (nodes > 1 or replicas > 1)
        if nodes > 1 and not use_redis:
            raise ValueError("several livekit-server nodes need a shared redis-server")
        api_secret = api_secret or secrets.token_urlsafe(32)
        announce = started or (lambda _part: None)
        before = len(self._children)
        try:
            shared = self.start_redis() if use_redis else None
            if shared:
                announce(shared)
            node_list: list[LiveKitServer] = []
            for _ in range(nodes):
                node_list.append(
                    self.start_livekit(api_key=api_key, api_secret=api_secret, redis=shared)
                )
                announce(node_list[-1])
            replica_list: list[TokenServer] = []
            for j in range(replicas):
                env = {"AGENT_NAME": agent_name} | ({"REDIS_URL": shared.url} if shared else {})
                replica_list.append(
                    self.start_token_server(node_list[j % nodes], env=env | dict(token_env or {}))
                )
                announce(replica_list[-1])
            worker_list: list[AgentWorker] = []
            for i in range(workers):
                worker_list.append(
                    self.start_agent(
                        node_list[i % nodes], agent_name, env=agent_env, timeout=agent_timeout
                    )
                )
                announce(worker_list[-1])
        except BaseException:
            while len(self._children) > before:
                self._children.pop().stop()
            raise
        return Cluster(
            redis=shared,
            nodes=tuple(node_list),
            token_servers=tuple(replica_list),
            workers=tuple(worker_list),
            agent_name=agent_name,
        )
