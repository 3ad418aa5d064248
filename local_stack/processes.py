"""Child processes the stack owns: free loopback ports, own process groups, logs kept to show.

Every child runs in its own session (Ctrl-C reaches only us, and we stop children in order) and
dies with us on Linux even when we cannot stop it (SIGKILL, a native SDK aborting the process).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from local_stack.errors import StackError
from local_stack.livekit_binary import REPO_ROOT


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
