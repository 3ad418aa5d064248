"""Token endpoint benchmark: mint path, CORS + metrics, dispatch path and room count, in one run.

Parts (--parts; all but `jobs` by default):
  mint, cors_metrics  Mint only (DISPATCH_MODE=none), one uvicorn worker each, wrk -t2 -c<conc>,
                      a unique room per request (bench/wrk_token.lua); columns measured in the same
                      repetition, their order rotated from one run to the next:
    (a) the kit's endpoint: auth on (TOKEN_SERVER_API_KEYS), validation, request log at INFO;
        CORS off, metrics off
    (b) the same with CORS on (TOKEN_SERVER_CORS_ORIGINS; wrk sends that Origin) and metrics on
    (c) a tutorial endpoint (bench/reference_endpoint.py: tutorial_app), uvicorn as the kit runs it
    (d) the floor: a Starlette route answering a constant small JSON, uvicorn the same way
    (e) AccessToken.to_jwt() in this process: the ceiling
    `mint` measures a, c, d, e; `cors_metrics` a and b. Every wrk request is the same bytes
    (API key and Origin header included) whichever column answers it.
  dispatch  DISPATCH_MODE=api against a real livekit-server with no agent worker registered
            (one would make the server's job launches the bottleneck: see the README), a fresh
            kit process per run, vs the server's ceiling from this process, one long-lived
            LiveKitAPI client, N asyncio tasks in flight: bare CreateDispatch, the one call
            the kit makes per new room (CreateRoom with the agent in the room's own
            dispatches and the request's id as room metadata), and CreateRoom with the agent.
            Columns: the kit with DISPATCH_RETRY=1 (the default: with no worker taking jobs its
            follower dispatches again after 2 s, at most DISPATCH_RETRY_RATE=50/s) and with 0.
            Each run's dispatches are checked: the kit's count of those it created lies between
            the requests answered and those sent, and ~50 sampled rooms have exactly one (with
            the follower on, rooms of the run's last second, before any re-dispatch).
  rooms     The livekit-server filled with rooms that stay (--rooms sizes): at each, the kit's
            dispatch path (DISPATCH_RETRY=1 and 0) at concurrency 16 with the CPU per request of
            the kit and of livekit-server (also net of its idle CPU), and each call's bare cost.
  jobs      Why the dispatch part registers no worker: with bench/fake_worker.py registered
            (it takes every job at once), new rooms at a steady rate (--job-rates), and the time
            from each dispatch to its job listed on the room, for rooms made by CreateDispatch
            (without agents: livekit-server then also launches its default unnamed dispatch)
            and for rooms created with the agent in their dispatches (as the kit makes them).

Every process started is stopped at the end (LocalStack), on loopback, free ports. Rooms a
measurement created are deleted after it, so each starts from the same server.

    uv run python bench/token_endpoint.py [--parts mint,cors_metrics,dispatch,rooms]
        [--duration 8] [--repeat 3] [--concurrency 1,16,64] [--rooms 0,5000,30000]

Needs `wrk` (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk). Writes
bench/results/token_endpoint-<time>.json; exits 1 if any request failed or a dispatch was lost
or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from livekit import api
from livekit.api.twirp_client import ServerError

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reference_endpoint import tutorial_jwt  # noqa: E402 (bench/, the script's own folder)

from local_stack import LiveKitServer, LocalStack, TokenServer, free_port  # noqa: E402
from local_stack.livekit_binary import LIVEKIT_SERVER_VERSION  # noqa: E402

WRK_SCRIPT = REPO / "bench" / "wrk_token.lua"
FAKE_WORKER = REPO / "bench" / "fake_worker.py"
RESULTS = REPO / "bench" / "results"
PARTS = ("mint", "cors_metrics", "dispatch", "rooms", "jobs")
DEFAULT_PARTS = PARTS[:4]
AGENT = "bench-agent"
KEY = "bench-key"
ORIGIN = "https://app.bench.example"  # allowed by (b); sent to every column
TOKEN_PATH = "/livekit/token"
STARTED = time.monotonic()

MINT_COLUMNS = {
    "a": "(a) kit: auth, validation, request log",
    "b": "(b) kit + CORS + metrics",
    "c": "(c) tutorial endpoint",
    "d": "(d) Starlette floor",
    "e": "(e) in-process to_jwt()",
}
MINT_RATIOS = (("b/a", "b", "a"), ("a/c", "a", "c"), ("a/d", "a", "d"), ("a/e", "a", "e"))
KIT_AUTH_ENV = {"TOKEN_SERVER_API_KEYS": KEY, "TOKEN_SERVER_ALLOW_NO_AUTH": "0"}
KIT_MINT_ENV = {**KIT_AUTH_ENV, "DISPATCH_MODE": "none", "TOKEN_SERVER_METRICS": "0"}
KIT_CORS_METRICS_ENV = {
    **KIT_MINT_ENV,
    "TOKEN_SERVER_METRICS": "1",
    "TOKEN_SERVER_CORS_ORIGINS": ORIGIN,
}
KIT_DISPATCH_ENV = {**KIT_AUTH_ENV, "DISPATCH_MODE": "api", "AGENT_NAME": AGENT}
KIT_ENVS = {
    "kit": {**KIT_DISPATCH_ENV, "DISPATCH_RETRY": "1"},
    "kit_no_follow": {**KIT_DISPATCH_ENV, "DISPATCH_RETRY": "0"},
}
DISPATCH_COLUMNS = {
    "kit": "kit endpoint, DISPATCH_RETRY=1 (default)",
    "kit_no_follow": "kit endpoint, DISPATCH_RETRY=0",
    "create_dispatch": "bare CreateDispatch, in-process",
    "kit_calls": "CreateRoom with the agent and room metadata (the kit's one call), in-process",
    "room_with_agent": "CreateRoom with the agent in its dispatches, in-process",
}
DISPATCH_RATIOS = (
    ("kit/create_dispatch", "kit", "create_dispatch"),
    ("kit/kit_calls", "kit", "kit_calls"),
    ("kit/kit_no_follow", "kit", "kit_no_follow"),
    ("kit_no_follow/kit_calls", "kit_no_follow", "kit_calls"),
    ("room_with_agent/create_dispatch", "room_with_agent", "create_dispatch"),
)
CREATED = 'token_server_dispatches_created_total{reason="request"}'
API_CALLS = "token_server_livekit_api_duration_seconds_count"
LIVEKIT_CALLS = (
    "create_room",
    "list_dispatch",
    "create_dispatch",
    "delete_dispatch",
    "list_participants",
)
AGAIN = 'token_server_dispatches_created_total{reason="again"}'
METRIC_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")
MIN_FREE_MEMORY_MB = 3000  # filling rooms stops before the shared machine runs short
SWEEP_CONCURRENCY = 16


class BenchError(Exception):
    """Something that makes the rest of the measurement meaningless: the run stops."""


@dataclass
class Report:
    """Failures (errors, lost or doubled dispatches) and notes, collected as the run goes."""

    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failures.append(what)
        say(f"!! FAILURE: {what}")

    def note(self, what: str) -> None:
        self.notes.append(what)
        say(f"note: {what}")


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {text}", file=sys.stderr, flush=True)


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median and min–max of per-repetition values."""
    vals = list(values)
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rotated(items: list[str], by: int) -> list[str]:
    k = by % len(items)
    return items[k:] + items[:k]


def uid() -> str:
    return uuid.uuid4().hex[:6]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- wrk -------------------------------------------------------------------------------------


def run_wrk(url: str, concurrency: int, seconds: float, prefix: str) -> dict[str, Any]:
    """wrk -t2 -c<concurrency> against `url`, rooms <prefix>-<thread>-<n>; its figures."""
    argv = ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds:g}s"]
    argv += ["--latency", "--timeout", "10s", "-s", str(WRK_SCRIPT), url]
    argv += ["--", prefix, KEY, ORIGIN]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        detail = proc.stderr.strip() or proc.stdout[-500:]
        raise BenchError(f"wrk failed (exit {proc.returncode}) against {url}: {detail}")
    stats: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    stats["rps"] = stats["requests"] / stats["duration_s"]
    stats["errors"] = stats["non200"] + stats["socket_errors"]
    return stats


def check_errors(report: Report, what: str, stats: dict[str, Any]) -> None:
    if stats["errors"]:
        detail = (
            f"{stats['non200']} non-2xx answers, {stats['socket_errors']} socket errors"
            if "non200" in stats
            else f"{stats['errors']} calls failed"
        )
        report.fail(f"{what}: {detail}")


def run_line(stats: dict[str, Any]) -> str:
    return (
        f"{stats['rps']:>8,.0f} req/s  p50 {stats['p50_ms']:7.2f} ms  "
        f"p99 {stats['p99_ms']:8.2f} ms  errors {stats['errors']}"
    )


# --- mint part -------------------------------------------------------------------------------


def mint_columns(parts: set[str]) -> list[str]:
    wanted = set()
    if "mint" in parts:
        wanted |= {"a", "c", "d", "e"}
    if "cors_metrics" in parts:
        wanted |= {"a", "b"}
    return sorted(wanted)


@dataclass(frozen=True)
class Served:
    """A server column: its token URL and its process (one uvicorn worker, in that process)."""

    url: str
    pid: int


def start_reference(stack: LocalStack, livekit: LiveKitServer, app: str) -> Served:
    """A bench/reference_endpoint.py app under uvicorn, run as the kit runs its own: one worker,
    loop and http "auto" (uvloop, httptools), log level info, no access log, no server header."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", f"bench.reference_endpoint:{app}"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    argv += ["--log-level", "info", "--no-access-log", "--no-server-header"]
    child = stack.spawn(f"{app}-{port}", argv, {**os.environ, **livekit.env()})
    child.wait_http(f"http://127.0.0.1:{port}/")
    return Served(f"http://127.0.0.1:{port}{TOKEN_PATH}", child.pid)


def start_mint_kit(stack: LocalStack, livekit: LiveKitServer, env: dict[str, str]) -> Served:
    kit = stack.start_token_server(livekit, env=env)
    return Served(kit.endpoint, kit.process.pid)


def start_mint_servers(
    stack: LocalStack, livekit: LiveKitServer, columns: list[str]
) -> dict[str, Served]:
    """Each server column (a–d)."""
    servers: dict[str, Served] = {}
    if "a" in columns:
        servers["a"] = start_mint_kit(stack, livekit, KIT_MINT_ENV)
    if "b" in columns:
        servers["b"] = start_mint_kit(stack, livekit, KIT_CORS_METRICS_ENV)
    if "c" in columns:
        servers["c"] = start_reference(stack, livekit, "tutorial_app")
    if "d" in columns:
        servers["d"] = start_reference(stack, livekit, "floor_app")
    return servers


def check_mint_servers(servers: dict[str, Served]) -> None:
    """One request each before measuring: every column answers 200; (b) answers the Origin wrk
    sends with its CORS header and serves /metrics, (a) does neither."""
    headers = {"Authorization": f"Bearer {KEY}", "Origin": ORIGIN}
    body = {"room_name": "check-room", "participant_name": "simulated_user", "language": "en"}
    with httpx.Client(timeout=10) as client:
        for label, server in servers.items():
            url = server.url
            answer = client.post(url, json=body, headers=headers)
            if answer.status_code != 200:
                raise BenchError(f"{MINT_COLUMNS[label]} answered {answer.status_code}")
            if label not in ("a", "b"):
                continue
            cors = answer.headers.get("access-control-allow-origin")
            scrape = client.get(url.removesuffix(TOKEN_PATH) + "/metrics", headers=headers)
            want = (ORIGIN, 200) if label == "b" else (None, 404)
            if (cors, scrape.status_code) != want:
                raise BenchError(
                    f"{MINT_COLUMNS[label]}: CORS header {cors!r} and /metrics "
                    f"{scrape.status_code}, expected {want}"
                )


def mint_rate(seconds: float) -> float:
    """(e): tokens per second from AccessToken.to_jwt() here, built as the tutorial builds them."""
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            tutorial_jwt("simulated_user", f"room-{n}", "devkey", "x" * 43)
            n += 1
    return n / (time.perf_counter() - started)


def measured_wrk(server: Served, conc: int, duration: float, prefix: str) -> dict[str, Any]:
    """run_wrk, and the CPU time the server process spent per request meanwhile (all threads)."""
    before = cpu_seconds(server.pid)
    stats = run_wrk(server.url, conc, duration, prefix)
    spent = cpu_seconds(server.pid) - before
    stats["cpu_us_per_req"] = 1e6 * spent / max(1, stats["requests"])
    return stats


def mint_repetition(
    rep: int, servers: dict[str, Served], levels: list[int], duration: float, report: Report
) -> dict[str, Any]:
    """One repetition: each concurrency level, every server column back to back."""
    runs: dict[str, dict[str, Any]] = {}
    for i, conc in enumerate(levels):
        row = runs[str(conc)] = {}
        for label in rotated(sorted(servers), rep + i):
            stats = measured_wrk(servers[label], conc, duration, f"m{rep}-{label}-{conc}-{uid()}")
            check_errors(report, f"mint {MINT_COLUMNS[label]} at concurrency {conc}", stats)
            row[label] = stats
            cpu = f"  CPU {stats['cpu_us_per_req']:.0f} µs/req"
            say(f"  rep {rep + 1} conc {conc:>3} {MINT_COLUMNS[label]:<40}{run_line(stats)}{cpu}")
    return {"wrk": runs}


def mint_ratios(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """b/a, a/c, a/d, a/e of this repetition's req/s, per concurrency level; and the same from
    the server's CPU time per request (x/y = cpu(y)/cpu(x): above 1, x costs less), which the
    machine's other load disturbs less than req/s."""
    out: dict[str, dict[str, float]] = {}
    for conc, row in result["wrk"].items():
        rates = {label: stats["rps"] for label, stats in row.items()}
        cpu = {label: stats["cpu_us_per_req"] for label, stats in row.items()}
        if "e_per_s" in result:
            rates["e"] = result["e_per_s"]
            cpu["e"] = 1e6 / result["e_per_s"]
        out[conc] = {
            name: rates[x] / rates[y] for name, x, y in MINT_RATIOS if {x, y} <= rates.keys()
        }
        out[conc] |= {
            f"{name} CPU": cpu[y] / cpu[x] for name, x, y in MINT_RATIOS if {x, y} <= cpu.keys()
        }
    return out


def summarize_mint(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread over the repetitions of each column's figures and each ratio."""
    columns: dict[str, dict[str, Any]] = {}
    ratios: dict[str, dict[str, Any]] = {}
    for conc in reps[0]["wrk"]:
        columns[conc] = {}
        for label in reps[0]["wrk"][conc]:
            runs = [r["wrk"][conc][label] for r in reps]
            columns[conc][label] = {
                k: spread(x[k] for x in runs) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
            }
            columns[conc][label]["errors"] = sum(x["errors"] for x in runs)
        ratios[conc] = {
            n: spread(r["ratios"][conc][n] for r in reps) for n in reps[0]["ratios"][conc]
        }
    summary: dict[str, Any] = {"columns": columns, "ratios": ratios}
    if "e_per_s" in reps[0]:
        summary["e_per_s"] = spread(r["e_per_s"] for r in reps)
    return summary


def run_mint_part(
    columns: list[str], levels: list[int], duration: float, repeat: int, report: Report
) -> dict[str, Any]:
    reps: list[dict[str, Any]] = []
    with LocalStack() as stack:
        say("mint: starting livekit-server (idle: DISPATCH_MODE=none) and the server columns")
        livekit = stack.start_livekit()
        servers = start_mint_servers(stack, livekit, columns)
        check_mint_servers(servers)
        for label, server in servers.items():  # warm-up, not recorded
            run_wrk(server.url, 16, 1, f"warm-{label}-{uid()}")
        for rep in range(repeat):
            say(f"mint: repetition {rep + 1}/{repeat}")
            result = mint_repetition(rep, servers, levels, duration, report)
            if "e" in columns:
                result["e_per_s"] = mint_rate(min(duration, 3.0))
                say(f"  rep {rep + 1} {MINT_COLUMNS['e']}: {result['e_per_s']:,.0f} tokens/s")
            result["ratios"] = mint_ratios(result)
            reps.append(result)
    return {
        "columns": {c: MINT_COLUMNS[c] for c in columns},
        "repetitions": reps,
        "summary": summarize_mint(reps),
    }


# --- dispatch and rooms parts: the stack, the kit's metrics, rooms -----------------------------


@dataclass(frozen=True)
class DispatchStack:
    """livekit-server (no agent worker registered) and the stack to start kit processes on."""

    stack: LocalStack
    livekit: LiveKitServer


async def kit_metrics(kit: TokenServer) -> dict[str, float]:
    """The kit's /metrics, each series by name and labels."""
    async with httpx.AsyncClient(timeout=10) as client:
        scrape = await client.get(
            kit.base_url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}
        )
    scrape.raise_for_status()
    out: dict[str, float] = {}
    for line in scrape.text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            out[match[1] + (match[2] or "")] = float(match[3])
    return out


async def delete_rooms(lkapi: api.LiveKitAPI, rooms: list[str], parallel: int = 64) -> None:
    """Delete what a measurement created (a room that never was is answered not_found at once)."""
    if not rooms:
        return
    say(f"  deleting the {len(rooms):,} rooms it created")
    slots = asyncio.Semaphore(parallel)

    async def one(room: str) -> None:
        async with slots:
            with contextlib.suppress(ServerError, aiohttp.ClientError, TimeoutError):
                await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))

    await asyncio.gather(*(one(room) for room in rooms))


def wrk_rooms(
    prefix: str, counters: list[int], margin: int = 0, last: int | None = None
) -> list[str]:
    """The rooms a wrk run asked for: with `margin`, leaving out each thread's last requests
    (built, maybe never sent); with `last`, only each thread's `last` before those."""
    rooms = []
    for thread, count in enumerate(counters, start=1):
        # wrk builds thread 1's first request to check the script (wrk.c: script_verify_request)
        # and never sends it
        first = 2 if thread == 1 else 1
        top = count - margin
        bottom = first if last is None else max(first, top - last + 1)
        rooms += [f"{prefix}-{thread}-{n}" for n in range(bottom, top + 1)]
    return rooms


async def named_dispatches(lkapi: api.LiveKitAPI, room: str) -> int:
    try:
        listed = await asyncio.wait_for(lkapi.agent_dispatch.list_dispatch(room), 10)
    except (ServerError, TimeoutError):
        return 0  # no such room: the request's dispatch is lost
    return sum(1 for d in listed if d.agent_name == AGENT)


async def sample_check(lkapi: api.LiveKitAPI, rooms: list[str], n: int = 50) -> dict[str, Any]:
    """~`n` of `rooms`, each of which must have exactly one dispatch of the agent."""
    sample = random.sample(rooms, min(n, len(rooms)))
    counts = await asyncio.gather(*(named_dispatches(lkapi, room) for room in sample))
    return {
        "sampled": len(sample),
        "exactly_one": sum(1 for c in counts if c == 1),
        "none": sum(1 for c in counts if c == 0),
        "more_than_one": sum(1 for c in counts if c > 1),
        "bad_rooms": [room for room, c in zip(sample, counts, strict=True) if c != 1][:5],
    }


async def start_kit(ds: DispatchStack, env: dict[str, str]) -> tuple[TokenServer, list[str]]:
    """A fresh kit process (no follow-up of an earlier run's rooms in it), warmed up with 20
    requests; the rooms those created."""
    kit = await asyncio.to_thread(ds.stack.start_token_server, ds.livekit, env=env)
    rooms = [f"warm-{uid()}-{i}" for i in range(20)]
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        for room in rooms:
            body = {"room_name": room, "participant_name": "simulated_user"}
            (await client.post(kit.endpoint, json=body)).raise_for_status()
    return kit, rooms


def check_dispatches(report: Report, what: str, stats: dict[str, Any]) -> None:
    """Every answered request created one dispatch (none lost, none doubled); so did each
    sampled room."""
    check, created = stats["dispatch_check"], stats["dispatches_created"]
    if check["exactly_one"] != check["sampled"]:
        report.fail(
            f"{what}: of {check['sampled']} sampled rooms {check['none']} have no dispatch, "
            f"{check['more_than_one']} more than one ({', '.join(check['bad_rooms'])})"
        )
    if not stats["requests"] <= created <= sum(stats["counters"]):
        report.fail(
            f"{what}: {created:.0f} dispatches created for {stats['requests']} answered requests "
            f"({sum(stats['counters'])} sent at most)"
        )


async def endpoint_run(
    ds: DispatchStack, lkapi: api.LiveKitAPI, label: str, conc: int, seconds: float, report: Report
) -> dict[str, Any]:
    """wrk against a fresh kit process; then rooms sampled (with the follower on, among the last
    second's, younger than its first re-dispatch at 2 s) and the dispatches it created counted.
    The process is stopped (ending its follow-up) and the rooms deleted."""
    kit, warm_rooms = await start_kit(ds, KIT_ENVS[label])
    prefix = f"{label}-{conc}-{uid()}"
    try:
        before = await kit_metrics(kit)
        cpu_before = cpu_seconds(kit.process.pid), cpu_seconds(ds.livekit.process.pid)
        stats = await asyncio.to_thread(run_wrk, kit.endpoint, conc, seconds, prefix)
        stats["cpu_per_request_ms"] = cpu_per_request(
            stats, cpu_before, (cpu_seconds(kit.process.pid), cpu_seconds(ds.livekit.process.pid))
        )
        per_thread_s = stats["rps"] / len(stats["counters"])
        last = int(per_thread_s) if label == "kit" else None
        rooms = wrk_rooms(prefix, stats["counters"], margin=conc, last=last)
        stats["dispatch_check"] = await sample_check(lkapi, rooms)
        after = await kit_metrics(kit)
    finally:
        await asyncio.to_thread(ds.stack.stop, kit.process)
    stats["dispatches_created"] = after.get(CREATED, 0) - before.get(CREATED, 0)
    stats["dispatched_again"] = after.get(AGAIN, 0) - before.get(AGAIN, 0)
    stats["livekit_calls"] = {
        call: after.get(series, 0) - before.get(series, 0)
        for call in LIVEKIT_CALLS
        if (series := f'{API_CALLS}{{call="{call}",result="ok"}}') in after
    }
    what = f"{DISPATCH_COLUMNS[label]} at concurrency {conc}"
    check_errors(report, what, stats)
    check_dispatches(report, what, stats)
    await delete_rooms(lkapi, warm_rooms + wrk_rooms(prefix, stats["counters"]))
    return stats


# --- dispatch part: the kit's endpoint vs the server's ceiling ----------------------------------

Call = Callable[[api.LiveKitAPI, str], Awaitable[None]]
DISPATCH_METADATA = json.dumps({"room_name": "r", "participant_name": "simulated_user"})


async def bare_create_dispatch(lkapi: api.LiveKitAPI, room: str) -> None:
    await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name=AGENT, room=room, metadata=DISPATCH_METADATA)
    )


async def room_with_agent(lkapi: api.LiveKitAPI, room: str) -> None:
    """The room created with the agent among its own dispatches (no default dispatch then)."""
    agent = api.RoomAgentDispatch(agent_name=AGENT, metadata=DISPATCH_METADATA)
    await lkapi.room.create_room(api.CreateRoomRequest(name=room, agents=[agent]))


async def kit_calls(lkapi: api.LiveKitAPI, room: str) -> None:
    """What token_server.dispatch.Dispatcher.ensure_dispatched asks of the server per new room:
    one CreateRoom, the agent in the room's own dispatches and the request's id as the room's
    metadata (the answer's metadata says the call built the room). The follower's ListDispatch,
    which finds the dispatch's id, comes after the answer."""
    agent = api.RoomAgentDispatch(agent_name=AGENT, metadata=DISPATCH_METADATA)
    marker = json.dumps({"token_request_id": uid()})
    await lkapi.room.create_room(api.CreateRoomRequest(name=room, agents=[agent], metadata=marker))


CEILINGS: dict[str, Call] = {
    "create_dispatch": bare_create_dispatch,
    "kit_calls": kit_calls,
    "room_with_agent": room_with_agent,  # the kit's first call alone
}


async def ceiling_run(
    lkapi: api.LiveKitAPI, call: Call, conc: int, seconds: float, prefix: str
) -> tuple[dict[str, Any], list[str]]:
    """`conc` asyncio tasks calling `call` on a new room each, back to back, for `seconds`."""
    latencies: list[float] = []
    rooms: list[str] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def loop(task: int) -> None:
        nonlocal errors
        for n in itertools.count(1):
            if time.perf_counter() >= deadline:
                return
            rooms.append(room := f"{prefix}-{task}-{n}")
            started = time.perf_counter()
            try:
                await call(lkapi, room)
            except (ServerError, aiohttp.ClientError, TimeoutError):
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(loop(task) for task in range(conc)))
    elapsed = time.perf_counter() - started
    stats = {
        "requests": len(latencies),
        "duration_s": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "errors": errors,
    }
    return stats, rooms


def cpu_per_request(
    stats: dict[str, Any], before: tuple[float, float], after: tuple[float, float]
) -> dict[str, float]:
    """CPU ms per answered call: of the process making the calls (the kit's endpoint, or this
    one for the in-process columns) and of livekit-server."""
    n = max(stats["requests"], 1)
    return {
        "caller": 1000 * (after[0] - before[0]) / n,
        "livekit_server": 1000 * (after[1] - before[1]) / n,
    }


async def dispatch_cell(
    ds: DispatchStack, lkapi: api.LiveKitAPI, label: str, conc: int, seconds: float, report: Report
) -> dict[str, Any]:
    if label in KIT_ENVS:
        return await endpoint_run(ds, lkapi, label, conc, seconds, report)
    prefix = f"{label}-{conc}-{uid()}"
    pids = os.getpid(), ds.livekit.process.pid
    cpu_before = cpu_seconds(pids[0]), cpu_seconds(pids[1])
    stats, rooms = await ceiling_run(lkapi, CEILINGS[label], conc, seconds, prefix)
    stats["cpu_per_request_ms"] = cpu_per_request(
        stats, cpu_before, (cpu_seconds(pids[0]), cpu_seconds(pids[1]))
    )
    check_errors(report, f"{DISPATCH_COLUMNS[label]} at concurrency {conc}", stats)
    await delete_rooms(lkapi, rooms)
    return stats


async def dispatch_repetition(
    ds: DispatchStack,
    lkapi: api.LiveKitAPI,
    rep: int,
    levels: list[int],
    seconds: float,
    report: Report,
) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    for i, conc in enumerate(levels):
        row = runs[str(conc)] = {}
        for label in rotated(list(DISPATCH_COLUMNS), rep + i):
            row[label] = stats = await dispatch_cell(ds, lkapi, label, conc, seconds, report)
            say(f"  rep {rep + 1} conc {conc:>3} {DISPATCH_COLUMNS[label]:<52}{run_line(stats)}")
    ratios = {
        conc: {name: row[x]["rps"] / row[y]["rps"] for name, x, y in DISPATCH_RATIOS}
        for conc, row in runs.items()
    }
    return {"runs": runs, "ratios": ratios}


async def dispatch_part(
    ds: DispatchStack, lkapi: api.LiveKitAPI, args: argparse.Namespace, report: Report
) -> dict[str, Any]:
    reps = []
    for rep in range(args.repeat):
        say(f"dispatch: repetition {rep + 1}/{args.repeat}")
        reps.append(
            await dispatch_repetition(
                ds, lkapi, rep, args.dispatch_concurrency, args.duration, report
            )
        )
    summary: dict[str, Any] = {"columns": {}, "ratios": {}}
    for conc in reps[0]["runs"]:
        summary["columns"][conc] = {
            label: {
                **{k: spread(r["runs"][conc][label][k] for r in reps) for k in ("rps", "p99_ms")},
                **{
                    f"cpu_ms_{who}": spread(
                        r["runs"][conc][label]["cpu_per_request_ms"][who] for r in reps
                    )
                    for who in ("caller", "livekit_server")
                },
            }
            for label in DISPATCH_COLUMNS
        }
        summary["ratios"][conc] = {
            name: spread(r["ratios"][conc][name] for r in reps) for name in reps[0]["ratios"][conc]
        }
    return {"columns": DISPATCH_COLUMNS, "repetitions": reps, "summary": summary}


# --- rooms part: per-request cost as the server holds more rooms -------------------------------


def memory_mb(pid: int | None = None) -> int:
    """`pid`'s resident memory, or (no pid) the memory still available on the machine, in MB."""
    path, key = (f"/proc/{pid}/status", "VmRSS:") if pid else ("/proc/meminfo", "MemAvailable:")
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return -1


async def fill_rooms(lkapi: api.LiveKitAPI, have: int, target: int, livekit: LiveKitServer) -> int:
    """CreateRoom fill-<have>..fill-<target-1> (empty and departure timeouts of a day, so they
    stay), 64 in flight; stops early when calls fail or the machine runs short of memory.
    Returns how many fill rooms exist."""
    slots = asyncio.Semaphore(64)
    started, first = time.monotonic(), have

    async def one(i: int) -> bool:
        request = api.CreateRoomRequest(name=f"fill-{i}", empty_timeout=86400)
        request.departure_timeout = 86400
        async with slots:
            try:
                await lkapi.room.create_room(request)
            except (ServerError, aiohttp.ClientError, TimeoutError):
                return False
        return True

    while have < target:
        upto = min(target, have + 1000)
        created = await asyncio.gather(*(one(i) for i in range(have, upto)))
        have += sum(created)
        if have % 5000 < 1000 or have >= target or not all(created):
            rate = (have - first) / (time.monotonic() - started)
            say(
                f"  {have:,} rooms ({rate:,.0f}/s), livekit-server RSS "
                f"{memory_mb(livekit.process.pid):,} MB, {memory_mb():,} MB free"
            )
        if not all(created) or not livekit.process.alive():
            break
        if 0 <= memory_mb() < MIN_FREE_MEMORY_MB:
            say(f"  stopping: under {MIN_FREE_MEMORY_MB} MB of memory left on the machine")
            break
    return have


async def time_calls(call: Callable[[int], Awaitable[object]], n: int) -> dict[str, float]:
    """`call(0)` .. `call(n-1)` one after the other: p50 and p99 in ms."""
    ms = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        ms.append((time.perf_counter() - started) * 1000)
    return {"n": n, "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99)}


async def bare_costs(
    lkapi: api.LiveKitAPI, samples: int, prefix: str
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Each LiveKit call alone (those the kit and its follower make, and ListRooms), one at a
    time, on new rooms; and the rooms it created."""
    made = [f"{prefix}-{i}" for i in range(samples)]
    dispatched = [f"{prefix}-d-{i}" for i in range(samples)]
    room = lkapi.room
    costs = {
        "CreateRoom": await time_calls(
            lambda i: room.create_room(api.CreateRoomRequest(name=made[i])), samples
        ),
        "ListDispatch": await time_calls(
            lambda i: lkapi.agent_dispatch.list_dispatch(made[i]), samples
        ),
        "ListParticipants": await time_calls(
            lambda i: room.list_participants(api.ListParticipantsRequest(room=made[i])), samples
        ),
        "CreateDispatch": await time_calls(
            lambda i: bare_create_dispatch(lkapi, dispatched[i]), samples
        ),
        "ListRooms (one name)": await time_calls(
            lambda i: room.list_rooms(api.ListRoomsRequest(names=[made[i]])), samples
        ),
        "ListRooms (every room)": await time_calls(
            lambda i: room.list_rooms(api.ListRoomsRequest()), max(5, samples // 10)
        ),
    }
    return costs, made + dispatched


async def idle_cpu_percent(pid: int, seconds: float = 3.0) -> float:
    """How busy a process keeps itself while nobody calls it (% of one core)."""
    try:
        before = cpu_seconds(pid)
        await asyncio.sleep(seconds)
        return 100 * (cpu_seconds(pid) - before) / seconds
    except (OSError, IndexError, ValueError):
        return float("nan")


SWEEP_KITS = ("kit", "kit_no_follow")


async def rooms_point(
    ds: DispatchStack, lkapi: api.LiveKitAPI, filled: int, args: argparse.Namespace, report: Report
) -> dict[str, Any]:
    """At one room count: livekit-server's idle CPU, the kit's dispatch path with the follower
    on and off (--repeat runs each, interleaved), then each call alone. livekit-server's CPU per
    request is also given net of what it burns idle at this size (a cost of the rooms held, not
    of requests)."""
    on_server = len((await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms)
    idle = await idle_cpu_percent(ds.livekit.process.pid)
    say(f"rooms: {on_server:,} rooms on the server, which uses {idle:.0f}% of a core idle")
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in SWEEP_KITS}
    for rep in range(args.repeat):
        for label in rotated(list(SWEEP_KITS), rep):
            seconds = args.sweep_duration
            run = await endpoint_run(ds, lkapi, label, SWEEP_CONCURRENCY, seconds, report)
            cpu = run["cpu_per_request_ms"]
            idle_ms = 1000 * idle / 100 * run["duration_s"] / max(run["requests"], 1)
            cpu["livekit_server_net_of_idle"] = cpu["livekit_server"] - idle_ms
            runs[label].append(run)
            say(
                f"  {DISPATCH_COLUMNS[label]}, concurrency {SWEEP_CONCURRENCY}, run {rep + 1}: "
                f"{run_line(run)}  CPU ms/req kit {cpu['caller']:.2f}, livekit-server "
                f"{cpu['livekit_server']:.2f} ({cpu['livekit_server_net_of_idle']:.2f} net of idle)"
            )
    bare, rooms = await bare_costs(lkapi, args.samples, f"bare-{uid()}")
    for call, cost in bare.items():
        say(f"  {call:<24} p50 {cost['p50_ms']:7.2f} ms  p99 {cost['p99_ms']:7.2f} ms")
    await delete_rooms(lkapi, rooms)
    cpu_keys = ("caller", "livekit_server", "livekit_server_net_of_idle")
    return {
        "rooms_filled": filled,
        "rooms_on_server": on_server,
        "server_idle_cpu_percent": idle,
        **{
            label: {
                **{k: spread(r[k] for r in label_runs) for k in ("rps", "p50_ms", "p99_ms")},
                "cpu_per_request_ms": {
                    k: spread(r["cpu_per_request_ms"][k] for r in label_runs) for k in cpu_keys
                },
            }
            for label, label_runs in runs.items()
        },
        "kit_runs": runs,
        "bare": bare,
    }


async def rooms_part(
    ds: DispatchStack, lkapi: api.LiveKitAPI, args: argparse.Namespace, report: Report
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    have = 0
    for size in sorted(set(args.rooms)):
        if size > have:
            say(f"rooms: filling the server to {size:,} rooms")
            have = await fill_rooms(lkapi, have, size, ds.livekit)
        if not ds.livekit.process.alive():
            report.note(f"livekit-server exited while filling toward {size:,} rooms")
            break
        points.append(await rooms_point(ds, lkapi, have, args, report))
        if have < size:
            report.note(f"the server took {have:,} of the {size:,} rooms asked for; sweep ends")
            break
    return {"points": points, "largest": have}


async def livekit_parts(
    ds: DispatchStack, args: argparse.Namespace, parts: set[str], report: Report
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lk = ds.livekit
    async with api.LiveKitAPI(lk.url, lk.api_key, lk.api_secret) as lkapi:
        if "dispatch" in parts:
            out["dispatch"] = await dispatch_part(ds, lkapi, args, report)
            print_dispatch(out["dispatch"], args)
        if "rooms" in parts:
            out["rooms"] = await rooms_part(ds, lkapi, args, report)
            print_rooms(out["rooms"], args)
    return out


def run_livekit_parts(args: argparse.Namespace, parts: set[str], report: Report) -> dict[str, Any]:
    with LocalStack() as stack:
        say("dispatch/rooms: starting livekit-server (no agent worker registered)")
        ds = DispatchStack(stack, stack.start_livekit())
        return asyncio.run(livekit_parts(ds, args, parts, report))


# --- jobs part: how fast livekit-server hands dispatched jobs to a registered worker ------------


async def wait_worker_taking(lkapi: api.LiveKitAPI, limit: float = 60) -> float:
    """livekit-server offers jobs to a newly registered worker once it has refreshed the agent
    names (up to ~5 s), and after a run of default dispatches only once their queued job
    requests have drained (~15 s after 80 rooms/s): probes, each a room created with the agent
    (which adds no default dispatch), until one's job is listed within half a second."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        room = f"probe-{uid()}"
        await room_with_agent(lkapi, room)
        await asyncio.sleep(0.5)
        listed = await lkapi.agent_dispatch.list_dispatch(room)
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))
        if any(d.state.jobs for d in listed):
            return time.monotonic() - started
    raise BenchError(f"livekit-server gave the fake worker no job within {limit:g}s")


JOB_STARTS: dict[str, Call] = {
    "CreateDispatch (room made without agents)": bare_create_dispatch,
    "CreateRoom with the agent in its dispatches": room_with_agent,
}


async def job_listed_after(lkapi: api.LiveKitAPI, room: str, start: Call, watch: bool) -> float:
    """Seconds from `start` to the room's dispatch listing a job (polled every 0.1 s)."""
    started = time.perf_counter()
    await start(lkapi, room)
    while watch and time.perf_counter() - started < 30:
        listed = await lkapi.agent_dispatch.list_dispatch(room)
        if any(d.agent_name == AGENT and d.state.jobs for d in listed):
            return time.perf_counter() - started
        await asyncio.sleep(0.1)
    return float("inf")


async def job_rate_run(
    lkapi: api.LiveKitAPI, start: Call, rate: int, seconds: float
) -> tuple[dict[str, float], list[str]]:
    """New rooms at `rate` a second for `seconds`; every 5th watched until its job is listed."""
    rooms = [f"job-{uid()}-{i}" for i in range(int(rate * seconds))]
    tasks = []
    began = time.perf_counter()
    for i, room in enumerate(rooms):
        tasks.append(asyncio.create_task(job_listed_after(lkapi, room, start, i % 5 == 0)))
        await asyncio.sleep(max(0.0, began + (i + 1) / rate - time.perf_counter()))
    after = [x for x in await asyncio.gather(*tasks)][::5]
    stats = {
        "rate": rate,
        "watched": len(after),
        "p50_s": percentile(after, 0.5),
        "p90_s": percentile(after, 0.9),
        "max_s": max(after),
        "within_2s": sum(1 for x in after if x <= 2) / len(after),
    }
    return stats, rooms


async def jobs_measure(lkapi: api.LiveKitAPI, args: argparse.Namespace) -> dict[str, Any]:
    """Every start at every rate, --repeat times over (livekit-server refreshes its agent names
    once a minute, and a job offered meanwhile waits: the median sees past one such run)."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        label: {str(rate): [] for rate in args.job_rates} for label in JOB_STARTS
    }
    for rep in range(args.repeat):
        say(f"jobs: repetition {rep + 1}/{args.repeat}")
        for label, start in JOB_STARTS.items():
            for rate in args.job_rates:
                stats, rooms = await job_rate_run(lkapi, start, rate, args.sweep_duration)
                say(
                    f"  {label}, {rate}/s: job listed after p50 {stats['p50_s']:.2f} s, "
                    f"p90 {stats['p90_s']:.2f} s; {stats['within_2s']:.0%} within 2 s"
                )
                runs[label][str(rate)].append(stats)
                await delete_rooms(lkapi, rooms)
                await wait_worker_taking(lkapi)  # each run starts with no job request queued
    summary = {
        label: {
            rate: {k: spread(s[k] for s in cell) for k in ("p50_s", "p90_s", "within_2s")}
            for rate, cell in cells.items()
        }
        for label, cells in runs.items()
    }
    return {"runs": runs, "summary": summary}


def run_jobs_part(args: argparse.Namespace) -> dict[str, Any]:
    """livekit-server with bench/fake_worker.py registered (it takes every job at once)."""
    with LocalStack() as stack:
        say("jobs: starting livekit-server and a worker that takes every job")
        livekit = stack.start_livekit()
        env = {**os.environ, **livekit.env(), "AGENT_NAME": AGENT, "PYTHONUNBUFFERED": "1"}
        worker = stack.spawn("fake-worker", [sys.executable, str(FAKE_WORKER)], env)
        worker.wait_log(r"registered worker", 30)

        async def measure() -> dict[str, Any]:
            async with api.LiveKitAPI(livekit.url, livekit.api_key, livekit.api_secret) as lkapi:
                await wait_worker_taking(lkapi)
                return await jobs_measure(lkapi, args)

        return asyncio.run(measure())


# --- tables ----------------------------------------------------------------------------------


def fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}–{s['max']:,.{digits}f})"


def print_mint(mint: dict[str, Any], args: argparse.Namespace) -> None:
    summary = mint["summary"]
    print(
        f"\nMint only, one uvicorn worker per server, wrk -t2, {args.duration:g} s per cell; "
        f"median (min–max) of {args.repeat} repetitions"
    )
    header = (
        f"{'conc':>4}  {'column':<42}{'req/s':>24}{'p50 ms':>22}{'p99 ms':>24}"
        f"{'server CPU µs/req':>22}{'errors':>8}"
    )
    print(header + "\n" + "-" * len(header))
    for conc, row in summary["columns"].items():
        for label, c in sorted(row.items()):
            print(
                f"{conc:>4}  {MINT_COLUMNS[label]:<42}{fmt(c['rps']):>24}"
                f"{fmt(c['p50_ms'], 2):>22}{fmt(c['p99_ms'], 2):>24}"
                f"{fmt(c['cpu_us_per_req']):>22}{c['errors']:>8}"
            )
    if "e_per_s" in summary:
        print(f"      {MINT_COLUMNS['e']:<42}{fmt(summary['e_per_s']):>24} tokens/s")
    print(
        "\nratios per repetition, median (min–max): of req/s, then of the server's CPU per "
        "request (x/y CPU = CPU(y) / CPU(x))"
    )
    for conc, ratios in summary["ratios"].items():
        for suffix in ("", " CPU"):
            cells = "   ".join(
                f"{name} {fmt(s, 2)}"
                for name, s in ratios.items()
                if name.endswith(" CPU") == (suffix == " CPU")
            )
            print(f"{conc:>4}  {cells}")


def print_dispatch(dispatch: dict[str, Any], args: argparse.Namespace) -> None:
    summary = dispatch["summary"]
    print(
        f"\nDispatch path, {args.duration:g} s per cell; median (min–max) of {args.repeat} "
        "repetitions"
    )
    print(
        "(CPU ms per answered call: the caller, i.e. the kit's process or this one, and "
        "livekit-server)"
    )
    header = (
        f"{'conc':>4}  {'column':<54}{'req/s':>22}{'p99 ms':>26}{'caller CPU ms':>22}"
        f"{'server CPU ms':>22}"
    )
    print(header + "\n" + "-" * len(header))
    for conc, row in summary["columns"].items():
        for label, c in row.items():
            name, rps, p99 = DISPATCH_COLUMNS[label], fmt(c["rps"]), fmt(c["p99_ms"], 1)
            cpu = fmt(c["cpu_ms_caller"], 2), fmt(c["cpu_ms_livekit_server"], 2)
            print(f"{conc:>4}  {name:<54}{rps:>22}{p99:>26}{cpu[0]:>22}{cpu[1]:>22}")
        cells = "   ".join(f"{n} {fmt(s, 2)}" for n, s in summary["ratios"][conc].items())
        print(f"{'':>4}  ratios: {cells}")
    print("\ndispatch checks: sampled rooms (exactly one / none / more), created vs answered:")
    for i, rep in enumerate(dispatch["repetitions"], start=1):
        for conc, row in rep["runs"].items():
            for label in KIT_ENVS:
                run, check = row[label], row[label]["dispatch_check"]
                print(
                    f"  rep {i} conc {conc:>3} {label:<14} {check['sampled']} sampled: "
                    f"{check['exactly_one']} / {check['none']} / {check['more_than_one']}; "
                    f"{run['dispatches_created']:.0f} created for {run['requests']} answered; "
                    f"dispatched again {run['dispatched_again']:.0f}; LiveKit calls "
                    + ", ".join(f"{k} {v:.0f}" for k, v in run["livekit_calls"].items())
                )


def print_rooms(rooms: dict[str, Any], args: argparse.Namespace) -> None:
    points = rooms["points"]
    if not points:
        return
    print(
        f"\nRooms on the server: the kit's dispatch path at concurrency {SWEEP_CONCURRENCY}, "
        f"{args.sweep_duration:g} s runs, median (min–max) of {args.repeat}; CPU ms per "
        "request of the kit and of livekit-server (and the latter net of its idle CPU)"
    )
    header = (
        f"{'rooms':>7}{'idle CPU':>9}  {'kit':<18}{'req/s':>18}{'p50 ms':>20}{'p99 ms':>24}"
        f"{'kit CPU':>18}{'server CPU':>18}{'net of idle':>18}"
    )
    print(header + "\n" + "-" * len(header))
    for p in points:
        for label in SWEEP_KITS:
            kit, cpu = p[label], p[label]["cpu_per_request_ms"]
            print(
                f"{p['rooms_on_server']:>7,}{p['server_idle_cpu_percent']:>8.0f}%  "
                f"{'RETRY=1 (default)' if label == 'kit' else 'RETRY=0':<18}{fmt(kit['rps']):>18}"
                f"{fmt(kit['p50_ms'], 1):>20}{fmt(kit['p99_ms'], 1):>24}"
                f"{fmt(cpu['caller'], 2):>18}{fmt(cpu['livekit_server'], 2):>18}"
                f"{fmt(cpu['livekit_server_net_of_idle'], 2):>18}"
            )
    calls = list(points[0]["bare"])
    print(
        f"\neach call alone, one at a time: p50 / p99 ms ({args.samples} calls; "
        "ListRooms of every room fewer)"
    )
    header = f"{'rooms':>7}" + "".join(f"{c:>24}" for c in calls)
    print(header + "\n" + "-" * len(header))
    for p in points:
        cells = "".join(
            f"{p['bare'][c]['p50_ms']:>11.2f} / {p['bare'][c]['p99_ms']:<9.2f}" for c in calls
        )
        print(f"{p['rooms_on_server']:>7,}{cells}")


def print_jobs(jobs: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nA registered worker taking every job: new rooms at a steady rate for "
        f"{args.sweep_duration:g} s; from the start to the job listed on the room's dispatch, "
        f"median (min–max) of {args.repeat}"
    )
    header = f"{'start':<46}{'rooms/s':>8}{'p50 s':>22}{'p90 s':>22}{'within 2 s':>22}"
    print(header + "\n" + "-" * len(header))
    for label, cells in jobs["summary"].items():
        for rate, c in cells.items():
            within = {k: 100 * v for k, v in c["within_2s"].items()}
            print(
                f"{label:<46}{rate:>8}{fmt(c['p50_s'], 2):>22}{fmt(c['p90_s'], 2):>22}"
                f"{fmt(within) + ' %':>22}"
            )


# --- main ------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--parts", default=",".join(DEFAULT_PARTS), help="any of " + ",".join(PARTS)
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured cell")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--concurrency", type=int_list, default=[1, 16, 64], help="mint part")
    parser.add_argument("--dispatch-concurrency", type=int_list, default=[16, 64])
    parser.add_argument("--rooms", type=int_list, default=[0, 5000, 30000], help="room counts")
    parser.add_argument("--sweep-duration", type=float, default=5.0, help="kit run per room count")
    parser.add_argument("--samples", type=int, default=200, help="bare calls per room count")
    parser.add_argument("--job-rates", type=int_list, default=[10, 20, 40, 80], help="jobs part")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/...)")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {PARTS}")
    return args


def write_results(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.parts.split(","))
    if not shutil.which("wrk"):
        print("bench: needs wrk (apt-get install wrk / brew install wrk)", file=sys.stderr)
        return 2
    now = datetime.datetime.now(datetime.UTC)
    out = args.out or RESULTS / f"token_endpoint-{now:%Y%m%dT%H%M%SZ}.json"
    report = Report()
    results: dict[str, Any] = {
        "when": now.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "livekit_server": LIVEKIT_SERVER_VERSION,
        "load_average_at_start": os.getloadavg(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    try:
        columns = mint_columns(parts)
        if columns:
            results["mint"] = run_mint_part(
                columns, args.concurrency, args.duration, args.repeat, report
            )
            write_results(results, out)
            print_mint(results["mint"], args)
        if parts & {"dispatch", "rooms"}:
            results.update(run_livekit_parts(args, parts, report))
            write_results(results, out)
        if "jobs" in parts:
            results["jobs"] = run_jobs_part(args)
            print_jobs(results["jobs"], args)
    except BenchError as exc:
        report.fail(f"run stopped: {exc}")
    results["load_average_at_end"] = os.getloadavg()
    results["failures"], results["notes"] = report.failures, report.notes
    write_results(results, out)
    print(f"\nwrote {out}")
    for note in report.notes:
        print(f"note: {note}")
    for failure in report.failures:
        print(f"FAILED: {failure}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
