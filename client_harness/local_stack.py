"""The kit's local stack (livekit-server, token endpoint, agent worker) as child processes.

Tests, the demo and the benchmarks all start the same real components through this one module:
loopback only, free ports chosen per run (so two runs can share a machine), every child in its own
process group and stopped on exit, including on Ctrl-C or a failed start.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from client_harness.config import HarnessConfig, load_config

LIVEKIT_SERVER_VERSION = "v1.13.5"
REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-livekit-server.sh"


class StackError(RuntimeError):
    """A component of the local stack could not be started; the message says which and why."""


def cached_livekit_server_path() -> Path:
    """Where scripts/install-livekit-server.sh leaves the binary it builds."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coval-livekit-kit" / f"livekit-server-{LIVEKIT_SERVER_VERSION}"


def find_livekit_server() -> Path:
    """$LIVEKIT_SERVER_BIN, else `livekit-server` on PATH, else the provisioned cache path."""
    explicit = os.environ.get("LIVEKIT_SERVER_BIN")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StackError(f"LIVEKIT_SERVER_BIN={explicit} is not an executable file")
        return path
    on_path = shutil.which("livekit-server")
    if on_path:
        return Path(on_path)
    cached = cached_livekit_server_path()
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    raise StackError(
        f"livekit-server {LIVEKIT_SERVER_VERSION} not found: run `bash {INSTALL_SCRIPT}` "
        "(builds it with Go), or set LIVEKIT_SERVER_BIN to an existing binary"
    )


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 right now (TCP or UDP), outside the ephemeral range.

    Ports the kernel hands out for outgoing connections (every WebRTC and HTTP client here makes
    many) come from the ephemeral range; probing outside it keeps the gap between our probe and
    the child's bind from being filled by some other socket. Starts still retry on a clash.
    """
    low, high = _ephemeral_range()
    candidates = [(10_000, low - 1)] if low > 11_000 else []
    if high < 64_000:
        candidates.append((high + 1, 65_000))
    for _ in range(100):
        if not candidates:
            break
        start, end = random.choice(candidates)
        port = random.randint(start, end)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it when the process that started it dies.

    The children run in their own sessions so Ctrl-C reaches only us and we stop them in order;
    this covers the case where we cannot — a SIGKILL, or the native LiveKit SDK aborting us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the ordinary stop path still applies
        pass


_PR_SET_PDEATHSIG = 1


class ChildProcess:
    """One child in its own process group, its output in a log file we can show when it fails."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the whole group, then SIGKILL what is left; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        # Children of a killed leader may linger in the group: make sure none survives.
        self.signal(signal.SIGKILL)
        self._log.close()
        return self.proc.returncode

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StackError(
                    f"{self.name} exited with code {self.proc.returncode} before {what}:\n"
                    f"{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.05)
        raise StackError(f"{self.name} not {what} after {timeout:.0f}s:\n{self.log_tail()}")

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        def answers() -> bool:
            try:
                httpx.get(url, timeout=1.0)
                return True
            except httpx.HTTPError:
                return False

        self.wait_until(answers, timeout, f"answering {url}")

    def wait_log(self, pattern: str, timeout: float = 60.0) -> None:
        regex = re.compile(pattern)
        self.wait_until(
            lambda: bool(regex.search(self.log_text())), timeout, f"logging /{pattern}/"
        )


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
    process: ChildProcess = field(repr=False, compare=False)


@dataclass(frozen=True)
class AgentWorker:
    """A running `sample-agent` worker, registered with a livekit-server under `agent_name`."""

    agent_name: str
    health_url: str  # the worker's own HTTP health endpoint
    process: ChildProcess = field(repr=False, compare=False)


def harness_config(
    endpoint: TokenServer, livekit: LiveKitServer, **fields: object
) -> HarnessConfig:
    """The platform's connection fields for a token endpoint of this stack, its API key as the
    platform's header, and the server's credentials for the harness's diagnosis; `fields`
    override (e.g. livekit_agent_name="x", agent_join_timeout=3)."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else None
    base: dict[str, object] = {
        "generate_token_endpoint": endpoint.endpoint,
        "livekit_url": livekit.url,
        "generate_token_headers": json.dumps(headers) if headers else "",
        "livekit_api_key": livekit.api_key,
        "livekit_api_secret": livekit.api_secret,
    }
    return load_config(env={}, overrides={**base, **fields})


# The kit's own settings (see .env.example): unless told to inherit them (the demo, which runs the
# kit as the user's shell configures it), a child gets only what its start sets, so a variable
# exported in the shell (DISPATCH_MODE=none, AGENT_JOB_EXECUTOR=thread, ...) cannot silently
# change the stack a test or a benchmark runs.
_KIT_PREFIXES = ("AGENT_", "DISPATCH_", "TOKEN_", "HARNESS_")
_KIT_NAMES = frozenset(
    {"LIVEKIT_URL", "LIVEKIT_PUBLIC_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"}
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

    def start_livekit(
        self, *, api_key: str = "devkey", api_secret: str | None = None, timeout: float = 30.0
    ) -> LiveKitServer:
        """livekit-server --dev on loopback with its own key pair and free ports."""
        return self._retrying_port_clashes(
            functools.partial(self._start_livekit, api_key, api_secret, timeout)
        )

    def _start_livekit(self, api_key: str, api_secret: str | None, timeout: float) -> LiveKitServer:
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
            agent_name=agent_name, health_url=f"http://127.0.0.1:{port}/", process=child
        )
