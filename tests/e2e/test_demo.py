"""`make demo`'s program: it prints how to reach what it started, and stops every process it
started, on Ctrl-C and on a failed step.

The spoken call itself is the harness's `run` path, covered by the harness's end-to-end tests;
.ci/run also runs `make demo` whole.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from livekit import api

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has released its ports and memory.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pump(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


async def _key_pair_works(url: str, key: str, secret: str) -> bool:
    async with api.LiveKitAPI(url, key, secret) as lkapi:
        await lkapi.room.list_rooms(api.ListRoomsRequest())
    return True


def test_ctrl_c_stops_the_whole_stack(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "client_harness", "demo", "--no-call", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with proc:  # closes the pipe and reaps the process, whatever happens
        assert proc.stdout is not None
        try:
            _demo_stops_on_ctrl_c(proc, proc.stdout)
        finally:
            if proc.poll() is None:  # a failed assertion: stop the stack, then report
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _demo_stops_on_ctrl_c(proc: subprocess.Popen[str], stdout: IO[str]) -> None:
    # a reader thread, so waiting for the line is bounded even if the demo prints nothing
    received: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(stdout, received), daemon=True)
    reader.start()
    lines: list[str] = []
    deadline = time.monotonic() + 180
    try:
        while (left := deadline - time.monotonic()) > 0:
            line = received.get(timeout=left)
            lines.append(line)
            if "press Ctrl-C" in line:
                break
    except queue.Empty:
        proc.kill()
    output = "".join(lines)
    assert "press Ctrl-C" in output, output
    pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", output)]
    assert len(pids) == 3 and all(_alive(p) for p in pids)
    # what a user needs to reach the stack by hand: the generated key pair, and every log
    key_pair = re.search(r"key pair  (\S+) / (\S+)", output)
    livekit_url = re.search(r"livekit-server  pid \d+  (\S+)", output)
    assert key_pair and livekit_url, output
    assert asyncio.run(_key_pair_works(livekit_url[1], key_pair[1], key_pair[2]))
    logs = [Path(p) for p in re.findall(r"log {7}(\S+)", output)]
    assert len(logs) == 3 and all(log.is_file() for log in logs), output
    assert re.search(r"logs of each process: \S+", output), output
    assert ports and not any(_port_free(p) for p in ports)

    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    reader.join(timeout=10)  # it ends at the pipe's end: every line is in
    rest = "".join(received.queue)
    assert proc.returncode == 0, rest
    assert "stopped every process it started" in rest
    assert not any(_alive(p) for p in pids)
    assert all(_port_free(p) for p in ports)


def test_a_failed_step_stops_what_already_started(tmp_path: Path) -> None:
    # livekit-server and the token endpoint start; then the agent refuses its settings.
    proc = subprocess.run(
        [sys.executable, "-m", "client_harness", "demo", "--out", str(tmp_path)],
        env={**os.environ, "AGENT_PROVIDER": "nonsense"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1, proc.stdout
    assert "FAILED to start the stack" in proc.stdout
    assert "AGENT_PROVIDER='nonsense'" in proc.stdout  # the agent's own message, shown
    assert "stopped every process it started" in proc.stdout
    pids = [int(p) for p in re.findall(r"pid (\d+)", proc.stdout)]
    assert len(pids) == 2  # livekit-server and the token endpoint had started
    assert not any(_alive(p) for p in pids)
