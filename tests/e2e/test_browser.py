"""A real browser uses the token endpoint: Chromium, LiveKit's JS SDK, CORS, the speaking agent.

Everything is real and on loopback: livekit-server, the token endpoint (api dispatch of
`test-agent`, an API key, TOKEN_SERVER_CORS_ORIGINS naming the page's origin), the speaking
`sample-agent start` worker, and Debian's Chromium driven by playwright-core
(`tests/browser/drive.mjs`). The page (`tests/browser/page.html`, `page.js`) is served by a small
static server of this test on its own port, a different origin from the token endpoint's, with
livekit-client's ESM build from `tests/browser/node_modules`. A second static server gives an
origin the endpoint does not allow.

1. The allowed origin: `TokenSource.endpoint(url, {headers: {'X-API-Key': key}})` fetches the
   token, a `Room` connects and publishes Chromium's fake microphone, the agent joins (kind
   AGENT), its greeting is heard (the inbound RTP stream's bytes and audio energy grow, and an
   AnalyserNode on the played track measures its level) and read (its `lk.transcription` text
   stream carries the script's greeting).
2. (a) The other origin: the browser refuses the preflight's answer, the SDK's fetch fails, and no
   room is created. (b) The allowed origin asking for an agent the endpoint does not allow: the
   endpoint's 403 `agent_not_allowed` reaches the page through the SDK's error.

Chromium (`apt-get install chromium`) and `tests/browser/node_modules` (`npm ci --prefix
tests/browser`) come from `make install`; without them this test fails and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from local_stack import REPO_ROOT, AgentWorker, LiveKitServer, LocalStack, TokenServer, free_port
from sample_agent.metadata import profile_from_job_metadata
from sample_agent.scripts import greeting
from tests.conftest import TEST_AGENT_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
NODE_MODULES = BROWSER_DIR / "node_modules"
LIVEKIT_CLIENT_ESM = NODE_MODULES / "livekit-client" / "dist" / "livekit-client.esm.mjs"
PLAYWRIGHT_CORE = NODE_MODULES / "playwright-core" / "package.json"
CHROMIUM = Path("/usr/bin/chromium")

API_KEY = "browser-test-key"
AGENT_METADATA = '{"persona": "Ava"}'
NOT_ALLOWED_AGENT = "some-other-agent"

# Generous bounds, never asserted as timings: 2 shared cores, Chromium and the agent's speech
# models compete for them.
CALL_DEADLINE_MS = 150_000  # token → agent joined → greeting spoken and transcribed
STEP_TIMEOUT_MS = 60_000  # launching Chromium, loading a page
DRIVER_TIMEOUT = 420.0  # the whole node script

# What "the agent's greeting was heard" means: well above silence (level, energy and RMS 0) and
# well below what the ~8 s spoken greeting gives here (~95 KB received, energy ~0.3, audioLevel
# peak ~0.33, analyser RMS peak ~0.13, audible over ~8 s).
MIN_AUDIO_BYTES = 4_000  # the stream flowed (Opus sends packets for silence too)
MIN_AUDIO_ENERGY = 0.02  # inbound-rtp totalAudioEnergy gained (sum of audioLevel² × seconds)
MIN_AUDIO_LEVEL = 0.05  # inbound-rtp audioLevel peak (0..1, 1 = full scale)
MIN_ANALYSER_RMS = 0.02  # AnalyserNode RMS peak on the played track (-34 dBFS)
AUDIBLE_RMS = 0.01  # an analyser sample at or above this (-40 dBFS) is audible
MIN_AUDIBLE_SPAN_MS = 1_000  # first to last audible sample: speech, not a click

TRANSCRIBED_TRACK = "lk.transcribed_track_id"


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the browser test, each with how to install it."""
    problems = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        problems.append(
            f"Chromium is missing ({CHROMIUM}): install Debian's package, "
            "`apt-get install chromium` (`make install` does it as root or with passwordless sudo)"
        )
    if shutil.which("node") is None:
        problems.append("node is missing: install Node.js 20 or later with npm")
    if not (LIVEKIT_CLIENT_ESM.is_file() and PLAYWRIGHT_CORE.is_file()):
        problems.append(
            f"{NODE_MODULES.relative_to(REPO_ROOT)} is missing or incomplete: run "
            "`npm ci --prefix tests/browser` (`make install` does)"
        )
    return problems


# --- the page's own origins ---------------------------------------------------------------------

_PAGE_FILES = {
    "/": (BROWSER_DIR / "page.html", "text/html; charset=utf-8"),
    "/page.js": (BROWSER_DIR / "page.js", "text/javascript; charset=utf-8"),
    "/livekit-client.esm.mjs": (LIVEKIT_CLIENT_ESM, "text/javascript; charset=utf-8"),
    "/livekit-client.esm.mjs.map": (
        LIVEKIT_CLIENT_ESM.with_name("livekit-client.esm.mjs.map"),
        "application/json",
    ),
}


class _PageHandler(http.server.BaseHTTPRequestHandler):
    """GET of the page, its script and livekit-client's ESM build; nothing else."""

    def do_GET(self) -> None:
        if self.path == "/favicon.ico":  # the browser asks; an empty answer keeps its log clean
            self.send_response(204)
            self.end_headers()
            return
        entry = _PAGE_FILES.get(self.path.split("?", 1)[0])
        if entry is None or not entry[0].is_file():
            self.send_error(404)
            return
        body = entry[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", entry[1])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the driver reports what the page saw


@dataclass
class PageSite:
    """A static HTTP server of the page on its own loopback port: one origin."""

    origin: str
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread


@contextlib.contextmanager
def page_site() -> Iterator[PageSite]:
    for attempt in range(5):
        port = free_port()
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _PageHandler)
            break
        except OSError:
            if attempt == 4:
                raise
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"page-site-{port}", daemon=True)
    thread.start()
    try:
        yield PageSite(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- the Node driver and the Chromium it launches ------------------------------------------------


def _processes_using(profile: Path) -> list[int]:
    """Pids of the Chromium processes launched with this test's own user-data-dir."""
    marker = f"--user-data-dir={profile}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (proc / "cmdline").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
    return pids


def _stop_browser_processes(profile: Path) -> list[int]:
    """Stop every process still running on `profile` (normally none: the driver closes
    Chromium); returns the pids that were still there."""
    deadline = time.monotonic() + 10
    while (left := _processes_using(profile)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        stop_by = time.monotonic() + 5
        while _processes_using(profile) and time.monotonic() < stop_by:
            time.sleep(0.1)
        if not _processes_using(profile):
            break
    return left


def run_driver(config: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run drive.mjs with `config`; its JSON, or an AssertionError with its stderr."""
    config_path = work / "drive-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    stderr_path = work / "drive-stderr.log"
    profile = Path(config["userDataDir"])
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            ["node", str(BROWSER_DIR / "drive.mjs"), str(config_path)],
            cwd=BROWSER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            stdout, _ = proc.communicate(timeout=DRIVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # playwright closes Chromium on SIGTERM
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
            raise AssertionError(
                f"drive.mjs did not finish within {DRIVER_TIMEOUT:.0f}s; its stderr:\n"
                + stderr_path.read_text(errors="replace")[-4000:]
            ) from None
        finally:
            # Chromium runs in its own process group (playwright starts it detached)
            leftover = _stop_browser_processes(profile)
    (work / "drive-output.json").write_bytes(stdout)
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        output: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(
            f"drive.mjs exited {proc.returncode} without its JSON line; stdout: {stdout[-2000:]!r}"
            f"\nstderr:\n{stderr_path.read_text(errors='replace')[-4000:]}"
        ) from None
    assert output.get("ok"), (
        f"drive.mjs could not drive Chromium: {output.get('error')}\nstderr:\n"
        + stderr_path.read_text(errors="replace")[-4000:]
    )
    output["leftover_browser_pids"] = leftover
    return output


# --- what LiveKit and the token endpoint saw -----------------------------------------------------


async def rooms_named(livekit: LiveKitServer, *names: str) -> list[str]:
    lkapi = api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret)
    try:
        rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=list(names)))
        return [room.name for room in rooms.rooms]
    finally:
        await lkapi.aclose()


def request_log(server: TokenServer) -> list[dict[str, Any]]:
    """The token endpoint's JSON request lines."""
    records = []
    for line in server.process.log_text().splitlines():
        start = line.find('{"event":"request"')
        if start >= 0:
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line[start:]))
    return records


def words(text: str) -> str:
    return " ".join(text.split())


def console_text(case: dict[str, Any]) -> str:
    return "\n".join(f"[{m['type']}] {m['text']}" for m in case["console"])


# --- the test -----------------------------------------------------------------------------------


async def test_a_browser_on_an_allowed_origin_calls_the_agent_and_others_are_refused(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Checked before any server starts, and a failure, not a skip: CI installs all of it.
    problems = missing_prerequisites()
    if problems:
        pytest.fail("the browser test cannot run:\n" + "\n".join(problems), pytrace=False)
    stack: LocalStack = request.getfixturevalue("stack")
    livekit_server: LiveKitServer = request.getfixturevalue("livekit_server")
    agent_worker: AgentWorker = request.getfixturevalue("agent_worker")

    call_room, refused_origin_room, refused_agent_room = (
        f"browser-{what}-{uuid.uuid4()}" for what in ("call", "origin", "agent")
    )
    with page_site() as allowed, page_site() as disallowed:
        token_server = stack.start_token_server(
            livekit_server,
            env={
                "AGENT_NAME": TEST_AGENT_NAME,
                "AGENT_METADATA": AGENT_METADATA,
                "DISPATCH_MODE": "api",
                "TOKEN_SERVER_API_KEYS": API_KEY,
                "TOKEN_SERVER_ALLOW_NO_AUTH": "0",
                "TOKEN_SERVER_CORS_ORIGINS": allowed.origin,
            },
        )
        try:
            profile = tmp_path / "chromium-profile"
            profile.mkdir()
            config = {
                "chromium": str(CHROMIUM),
                "userDataDir": str(profile),
                "stepTimeoutMs": STEP_TIMEOUT_MS,
                "tokenUrl": token_server.endpoint,
                "apiKey": API_KEY,
                "allowedOrigin": allowed.origin,
                "disallowedOrigin": disallowed.origin,
                "call": {
                    "roomName": call_room,
                    "participantName": "browser_user",
                    "deadlineMs": CALL_DEADLINE_MS,
                },
                "refusedOrigin": {"roomName": refused_origin_room, "participantName": "x"},
                "refusedAgent": {
                    "roomName": refused_agent_room,
                    "participantName": "browser_user",
                    "agentName": NOT_ALLOWED_AGENT,
                },
            }
            out = await asyncio.to_thread(run_driver, config, tmp_path)
            log = request_log(token_server)
            refused_rooms = await rooms_named(
                livekit_server, refused_origin_room, refused_agent_room
            )
        finally:
            stack.stop(token_server.process)

    assert not out["leftover_browser_pids"], "Chromium outlived the driver's close"
    assert_call(out["call"])
    assert_refused_origin(out["refusedOrigin"], disallowed.origin, refused_origin_room, log)
    assert_refused_agent(out["refusedAgent"], refused_agent_room, log)
    # nothing refused reached LiveKit: no room, so no dispatch, for either refused request
    assert refused_rooms == [], refused_rooms
    assert agent_worker.process.alive(), agent_worker.process.log_tail()


def assert_call(case: dict[str, Any]) -> None:
    """Case 1: token from the allowed origin, the agent joined, its greeting heard and read."""
    call = case["result"]
    context = json.dumps({k: v for k, v in call.items() if k not in ("levels", "stats")})[:3000]
    context += "\n" + console_text(case)[-3000:]
    assert call["error"] is None and call["stage"] == "done", context
    assert call["microphone"]["published"], context

    agent = call["agent"]
    assert agent["kind"] == "AGENT" and agent["isAgent"], agent
    assert agent["attributes"].get("lk.agent.name") == TEST_AGENT_NAME, agent
    assert "speaking" in agent["states"], agent

    # heard: the inbound RTP stream of the agent's track grew, with real audio energy in it
    stats = call["stats"]
    assert stats, f"no inbound-rtp audio stats for the agent's track: {context}"
    received = stats[-1]["bytesReceived"] - stats[0]["bytesReceived"]
    energy = stats[-1]["totalAudioEnergy"] - stats[0]["totalAudioEnergy"]
    loudest = max(s["audioLevel"] for s in stats)
    assert received >= MIN_AUDIO_BYTES, (received, stats[0], stats[-1])
    assert energy >= MIN_AUDIO_ENERGY, (energy, stats[0], stats[-1])
    assert loudest >= MIN_AUDIO_LEVEL, loudest
    # ... and the page's own WebAudio analyser, on the track as played, measured it
    peak_rms = max(level["rms"] for level in call["levels"])
    assert peak_rms >= MIN_ANALYSER_RMS, peak_rms
    audible = [level["t"] for level in call["levels"] if level["rms"] >= AUDIBLE_RMS]
    assert audible and audible[-1] - audible[0] >= MIN_AUDIBLE_SPAN_MS, audible

    # read: the agent's transcript of its own track, on the lk.transcription text stream
    expected = words(
        greeting(
            profile_from_job_metadata(json.dumps({"agent_metadata": AGENT_METADATA, "custom": {}}))
        )
    )
    own = [
        words(t["text"])
        for t in call["transcripts"]
        if t["from"] == agent["identity"]
        and t["attributes"].get(TRANSCRIBED_TRACK) == agent["audioTrackSid"]
    ]
    assert expected in own, (expected, call["transcripts"])


def assert_refused_origin(
    case: dict[str, Any], origin: str, room: str, log: list[dict[str, Any]]
) -> None:
    """Case 2a: an origin the endpoint does not list: the browser blocks the call."""
    result = case["result"]
    console = console_text(case)
    assert not result["ok"], result
    # the SDK's fetch rejects the way fetch does on a CORS failure: a TypeError, no status
    assert result["error"]["name"] == "TypeError", result
    assert "Failed to fetch" in result["error"]["message"], result
    assert "blocked by CORS policy" in console, console
    assert f"from origin '{origin}'" in console, console
    # the endpoint refused the preflight, and the POST itself was never sent
    assert any(r["method"] == "OPTIONS" and r["status"] == 400 for r in log), log
    assert not any(r.get("room") == room for r in log), log


def assert_refused_agent(case: dict[str, Any], room: str, log: list[dict[str, Any]]) -> None:
    """Case 2b: the allowed origin asking for an agent the endpoint does not allow: its 403."""
    result = case["result"]
    assert not result["ok"], result
    message = result["error"]["message"]
    assert "received 403" in message, message  # TokenSource.endpoint's HTTP error
    assert "agent_not_allowed" in message and NOT_ALLOWED_AGENT in message, message
    assert "CORS policy" not in console_text(case), console_text(case)
    assert [r["outcome"] for r in log if r.get("room") == room] == ["agent_not_allowed"], log
