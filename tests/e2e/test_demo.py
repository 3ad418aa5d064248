"""`make demo`'s program: it stops every process it started, on Ctrl-C and on a failed step.

The spoken call itself is the harness's `run` path, covered by the harness's end-to-end tests;
.ci/run also runs `make demo` whole.
"""

from __future__ import annotations

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


def test_ctrl_c_stops_the_whole_stack(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "client_harness", "demo", "--no-call", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with proc:  # closes the pipe and reaps the process, whatever happens
        assert proc.stdout is not None
        _demo_stops_on_ctrl_c(proc, proc.stdout)


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
