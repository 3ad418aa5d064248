"""Client-harness load benchmark against the real local stack (not a test: prints and writes JSON).

For each concurrency level (default 1, 10, 50 — 50 is the platform's maximum) it starts a fresh
sample-agent worker sized for the level, runs that many simulations through the harness, and
reports: success rate, the peak number of simulations in progress at once, p50/p95 of token
request → agent joined (and of caller connected → agent joined), p50/p95 of the first response
latency, and CPU seconds per simulated minute (harness + livekit-server + token server + agent
workers, every process; the JSON splits it by part).

Modes (the load-heavy parts run lighter, as the issue allows):
- level 1: `voice` — the full spoken booking call: caller TTS, agent STT+TTS, harness VAD + STT.
- levels >1: `text` — caller turns on lk.chat, replies read from lk.transcription; the agent runs
  text-only (AGENT_TEXT_ONLY=1: no audio track either way, no speech models loaded, so a job
  process is ~17 MB instead of ~350) with the default process executor, one process per call,
  with a warm process per call plus IDLE_MARGIN, and livekit-agents' event-loop monitor off
  (LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS=0: a 20 ms heartbeat and a watchdog thread per process).
  `--text-executor thread` runs calls as threads of several worker processes instead; under load
  its rooms sometimes never finish connecting (livekit rtc FFI, see the closing note of issue 4).
- `--ramps 0 30`: each text level once per value, the starts all at once (0, a burst) or spread
  evenly over that many seconds; `--caller-pause` makes calls long enough to overlap.

    uv run python bench/harness_load.py                                  # 1, 10, 50, bursts
    uv run python bench/harness_load.py --levels 1 10 50 --ramps 0 30 --caller-pause 10
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from process_usage import group_cpu_seconds, group_pss_mb

from client_harness.caller.call_room import CallRoom, Clock
from client_harness.caller.runner import DEFAULT_CONNECT_PARALLELISM, run_many
from client_harness.caller.simulation import RunOptions
from client_harness.caller.token_fetch import new_room_name, request_token
from client_harness.config import load_config, stack_config
from client_harness.measurement.metrics import SimulationResult
from client_harness.measurement.recorder import Recorder
from client_harness.report import percentile
from client_harness.scenario import load_scenario, scenario_from_dict
from local_stack import AgentWorker, LocalStack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AGENT_NAME = "bench-harness-agent"
# Each level's timings, p50/p95 (SimulationResult attributes).
TIMINGS = (
    "agent_join_from_token_request_s",
    "agent_join_from_connect_s",
    "connect_s",
    "token_request_s",
    "first_response_latency_s",
)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Warm job threads (thread executor, --text-executor thread). With no call running yet,
# livekit-agents estimates each accepted job's load as (load threshold)/num_idle_processes, so
# more accepted-not-started jobs than that mark the worker full; too many idle threads and their
# event loops starve the worker's own loop.
THREAD_IDLE_JOBS = 15
# Calls per thread-executor worker process: one process (one GIL, one FFI runtime) for ~50 calls
# answers job requests late; several smaller workers spread the load.
CALLS_PER_THREAD_WORKER = 10
PSS_PER_IDLE_PROCESS_MB = 260  # a voice job process with its models: measured ~200 MB, + margin
PSS_PER_TEXT_PROCESS_MB = 60  # a text-only job process loads no models: measured ~17 MB
# Warm processes beyond the calls at text levels: the same accepted-not-started estimate as above
# means exactly `level` idle processes read as full before the burst's last job is accepted.
IDLE_MARGIN = 5

TEXT_SCENARIO = scenario_from_dict(
    {
        "name": "booking-text",
        "greeting_wait_seconds": 60,
        "response_timeout_seconds": 60,
        "max_duration_seconds": 240,
        "turns": [
            {"say": "Hi, I would like to book a table for four people on Friday at seven."},
            {"say": "Can I also ask about your opening hours?"},
            {"say": "Great, thank you. Goodbye."},
        ],
    }
)


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_processes_for(level: int, share: float, mode: str) -> int:
    """Warm processes for `level` calls within `share` of available memory (x2: the refill)."""
    budget = mem_available_mb() * share
    per_process = PSS_PER_IDLE_PROCESS_MB if mode == "voice" else PSS_PER_TEXT_PROCESS_MB
    # a few more than the calls: livekit-agents counts each accepted job not yet running as
    # 1/idle of the worker's load, so with exactly `level` idle a full burst reads as full
    wanted = level if mode == "voice" else level + IDLE_MARGIN
    return max(1, min(wanted, int(budget // (2 * per_process))))


def worker_env(calls: int, idle: int, executor: str, text_only: bool) -> dict[str, str]:
    """A load worker's settings: `calls` at once, `idle` warm processes (or threads)."""
    return {
        "AGENT_PROVIDER": "offline",
        "AGENT_JOB_EXECUTOR": executor,
        "AGENT_TEXT_ONLY": "1" if text_only else "0",
        "AGENT_IDLE_PROCESSES": str(idle),
        "AGENT_MAX_CALLS": str(calls + 2),
        # livekit-agents watches every job's event loop with a 20 ms heartbeat and a watchdog
        # thread: cheap in a process per call, but with a thread per call dozens of them wake
        # 100 times a second each, and an idle worker alone burned half a core (measured)
        **({"LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS": "0"} if text_only else {}),
    }


def wait_prewarmed(worker: AgentWorker, idle: int) -> None:
    """Registered is not ready: wait until every warm process (or thread) has its models."""
    worker.process.wait_until(
        lambda: worker.process.log_text().count("process prewarmed") >= idle,
        600.0,
        f"prewarming {idle} processes",
    )


def start_worker(
    stack: LocalStack, livekit: Any, calls: int, idle: int, executor: str, text_only: bool
) -> AgentWorker:
    env = worker_env(calls, idle, executor, text_only)
    worker = stack.start_agent(livekit, AGENT_NAME, env=env, timeout=600.0)
    wait_prewarmed(worker, idle)
    return worker


def stats(values: list[float]) -> dict[str, float | None]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}


def timing_stats(results: list[SimulationResult]) -> dict[str, dict[str, float | None]]:
    """p50/p95 of each of TIMINGS over the simulations that got that far."""
    out = {}
    for key in TIMINGS:
        values = [getattr(r, key) for r in results]
        out[key] = stats([float(v) for v in values if v is not None])
    return out


def failure_summary(results: list[SimulationResult]) -> dict[str, Any]:
    failures = [
        {"index": r.index, "step": r.failed_step, "error": r.error, "diagnosis": r.diagnosis}
        for r in results
        if not r.ok
    ]
    return {
        "failures_by_step": dict(Counter(f["step"] for f in failures)),
        "failures_by_reason": dict(
            Counter(
                f"{f['step']}: {UUID.sub('<room>', str(f['error'] or ''))[:70]}" for f in failures
            ).most_common(8)
        ),
        "failures": failures[:10],
    }


@dataclass(frozen=True)
class WorkerPlan:
    mode: str  # voice at level 1, text above
    executor: str  # the agent's job executor: process or thread
    workers: int
    calls_per_worker: int
    idle: int  # warm processes (or threads) per worker


def plan_workers(
    level: int, memory_share: float, calls_per_worker: int, text_executor: str
) -> WorkerPlan:
    mode = "voice" if level == 1 else "text"
    executor = "process" if level == 1 else text_executor
    if executor == "process":
        return WorkerPlan(mode, executor, 1, level, idle_processes_for(level, memory_share, mode))
    workers = -(-level // calls_per_worker)
    per_worker = -(-level // workers)
    return WorkerPlan(mode, executor, workers, per_worker, min(per_worker, THREAD_IDLE_JOBS))


async def start_workers(stack: LocalStack, livekit: Any, plan: WorkerPlan) -> list[AgentWorker]:
    """The plan's workers, started side by side, each ready with its warm processes."""
    text_only = plan.mode == "text"
    return await asyncio.gather(
        *(
            asyncio.to_thread(
                start_worker,
                stack,
                livekit,
                plan.calls_per_worker,
                plan.idle,
                plan.executor,
                text_only,
            )
            for _ in range(plan.workers)
        )
    )


async def run_level(
    stack: LocalStack,
    livekit: Any,
    token_server: Any,
    level: int,
    voice_scenario: Any,
    memory_share: float,
    calls_per_worker: int,
    text_executor: str,
    ramp_s: float,
    caller_pause_s: float,
) -> dict[str, Any]:
    plan = plan_workers(level, memory_share, calls_per_worker, text_executor)
    mode = plan.mode
    started = time.monotonic()
    workers = await start_workers(stack, livekit, plan)
    worker_start_s = time.monotonic() - started
    worker_groups = [w.process.pid for w in workers]
    idle_pss = sum(group_pss_mb(g) for g in worker_groups)
    config = stack_config(
        token_server,
        livekit,
        livekit_agent_name=AGENT_NAME,
        agent_join_timeout=60,
        request_timeout=30,
    )
    groups = {"livekit-server": [livekit.process.pid], "token-server": [token_server.process.pid]}
    groups["agent workers"] = worker_groups
    cpu0 = {name: sum(group_cpu_seconds(g) for g in pids) for name, pids in groups.items()}
    text_scenario = dataclasses.replace(TEXT_SCENARIO, pause_before_reply_seconds=caller_pause_s)
    run = await run_many(
        config,
        voice_scenario if mode == "voice" else text_scenario,
        RunOptions(mode=mode, record_dir=None),
        count=level,
        concurrency=level,
        ramp_seconds=ramp_s,
    )
    stack_cpu_by = {
        name: sum(group_cpu_seconds(g) for g in pids) - cpu0[name] for name, pids in groups.items()
    }
    stack_cpu = sum(stack_cpu_by.values())
    peak_pss = sum(group_pss_mb(g) for g in worker_groups)
    for worker in workers:
        stack.stop(worker.process)
    results = run.results
    simulated_min = sum(r.duration_s or 0.0 for r in results) / 60.0
    return {
        "concurrency": level,
        "ramp_s": ramp_s,
        "caller_pause_s": caller_pause_s if mode == "text" else None,
        "peak_concurrency": run.peak_concurrency,
        "mode": mode,
        "agent_job_executor": plan.executor,
        "agent_workers": plan.workers,
        "agent_calls_per_worker": plan.calls_per_worker,
        "agent_idle_processes": plan.idle,
        "success_rate": sum(r.ok for r in results) / len(results),
        **timing_stats(results),
        "harness_cpu_s": run.cpu_s,
        "stack_cpu_s": stack_cpu,
        "stack_cpu_s_by_part": stack_cpu_by,
        "simulated_minutes": simulated_min,
        "cpu_s_per_simulated_minute": (run.cpu_s + stack_cpu) / simulated_min
        if simulated_min
        else None,
        "harness_cpu_s_per_simulated_minute": run.cpu_s / simulated_min if simulated_min else None,
        "wall_s": run.wall_s,
        "worker_start_s": worker_start_s,
        "agent_pss_idle_mb": idle_pss,
        "agent_pss_after_mb": peak_pss,
        **failure_summary(results),
    }


async def join_capacity(livekit: Any, token_server: Any, level: int) -> dict[str, Any]:
    """The platform's side alone at `level`: token request + WebRTC join for every simulation at
    once, no agent (DISPATCH_MODE=none endpoint), so the figures are the harness's and the
    server's, not the agent worker's."""
    config = load_config(
        env={},
        overrides={
            "generate_token_endpoint": token_server.endpoint,
            "livekit_url": livekit.url,
            "request_timeout": 30,
        },
    )
    slots = asyncio.Semaphore(DEFAULT_CONNECT_PARALLELISM)
    token_s: list[float] = []
    connect_s: list[float] = []
    errors: list[str] = []
    rooms: list[CallRoom] = []
    cpu0 = time.process_time()
    started = time.monotonic()

    async def one(client: httpx.AsyncClient) -> None:
        async with slots:
            clock = Clock()
            try:
                token = await request_token(client, config, new_room_name())
                token_s.append(token.seconds)
                room = CallRoom(clock, Recorder(), listen_audio=False)
                rooms.append(room)
                t = clock.now()
                await room.connect(token.response.server_url, token.response.token, 10.0)
                connect_s.append(clock.now() - t)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:100])

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=level + 4)) as client:
        await asyncio.gather(*(one(client) for _ in range(level)))
    wall = time.monotonic() - started
    for room in rooms:
        await room.close()
    return {
        "concurrency": level,
        "joined": len(connect_s),
        "token_request_s": stats(token_s),
        "connect_s": stats(connect_s),
        "wall_s": wall,
        "harness_cpu_s": time.process_time() - cpu0,
        "errors": errors[:5],
    }


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'conc':>4} {'ramp':>5} {'peak':>4} {'exec':>7} {'idle':>4} {'mode':>5} {'success':>8} "
        f"{'join p50':>9} {'join p95':>9} {'from conn p95':>13} "
        f"{'1st resp p50':>12} {'1st resp p95':>12} {'CPU s/sim-min':>13} {'harness':>8} "
        f"{'wall s':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['concurrency']:>4} skipped: {r['skipped']}")
            continue
        join, first = r["agent_join_from_token_request_s"], r["first_response_latency_s"]
        lines.append(
            f"{r['concurrency']:>4} {r['ramp_s']:>5.0f} {r['peak_concurrency']:>4} "
            f"{r['agent_job_executor']:>7} {r['agent_idle_processes']:>4} "
            f"{r['mode']:>5} "
            f"{r['success_rate']:>8.0%} {fmt(join['p50']):>9} "
            f"{fmt(join['p95']):>9} {fmt(r['agent_join_from_connect_s']['p95']):>13} "
            f"{fmt(first['p50']):>12} {fmt(first['p95']):>12} "
            f"{fmt(r['cpu_s_per_simulated_minute']):>13} "
            f"{fmt(r['harness_cpu_s_per_simulated_minute']):>8} "
            f"{r['wall_s']:>7.1f}"
        )
    for r in rows:
        if r.get("failures_by_reason"):
            lines.append(
                f"  {r['concurrency']} (ramp {r['ramp_s']:g} s): failures {r['failures_by_reason']}"
            )
    lines.append(
        "ramp = the starts spread over this many s; peak = most simulations running at once; "
        "join = token request sent → agent joined (s); from conn = caller connected → agent "
        "joined; 1st resp = caller's first turn → "
        "agent's first audio (voice) / first transcript text (text); exec = the agent's "
        "job executor (process per call, or thread per call sharing one copy of the models)"
    )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 10, 50])
    parser.add_argument(
        "--join-levels",
        type=int,
        nargs="*",
        default=[50],
        help="also measure the platform side alone (token + join, no agent) at these levels",
    )
    parser.add_argument(
        "--agent-memory-share",
        type=float,
        default=0.45,
        help="largest share of available memory the agent's warm processes may take",
    )
    parser.add_argument(
        "--ramps",
        type=float,
        nargs="*",
        default=[0.0],
        help="text levels: run once per value, the starts spread evenly over that many seconds "
        "(0: all at once, as a burst)",
    )
    parser.add_argument(
        "--caller-pause",
        type=float,
        default=3.0,
        help="text levels: seconds the caller waits before each turn (longer calls overlap "
        "more when the starts are spread)",
    )
    parser.add_argument(
        "--text-executor",
        choices=["process", "thread"],
        default="process",
        help="the agent's job executor at text levels (level 1 always uses process)",
    )
    parser.add_argument(
        "--calls-per-worker",
        type=int,
        default=CALLS_PER_THREAD_WORKER,
        help="text levels: calls per thread-executor agent worker (workers = level / this)",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep the stack's logs here (default: dropped)"
    )
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    voice_scenario = load_scenario(ROOT / "client_harness" / "scenarios" / "booking.yaml")
    rows = []
    with LocalStack(args.log_dir) as stack:
        livekit = stack.start_livekit()
        token_server = stack.start_token_server(
            livekit, env={"AGENT_NAME": AGENT_NAME, "DISPATCH_MODE": "api"}
        )
        join_server = stack.start_token_server(livekit, env={"DISPATCH_MODE": "none"})
        for level in args.levels:
            for ramp in args.ramps if level > 1 else [0.0]:
                row = await run_level(
                    stack,
                    livekit,
                    token_server,
                    level,
                    voice_scenario,
                    args.agent_memory_share,
                    args.calls_per_worker,
                    args.text_executor,
                    ramp,
                    args.caller_pause,
                )
                rows.append(row)
                print(table([row]).splitlines()[2], flush=True)
        joins = []
        for level in args.join_levels:
            joins.append(await join_capacity(livekit, join_server, level))
            j = joins[-1]
            tok, conn = j["token_request_s"], j["connect_s"]
            print(
                f"join capacity at {level}: {j['joined']}/{level} joined in {j['wall_s']:.1f} s, "
                f"token p50/p95 {fmt(tok['p50'])}/{fmt(tok['p95'])} s, "
                f"connect p50/p95 {fmt(conn['p50'])}/{fmt(conn['p95'])} s, "
                f"harness CPU {j['harness_cpu_s']:.1f} s",
                flush=True,
            )
    print()
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"harness_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {"levels": rows, "join_capacity": joins, "machine": {"cpus": os.cpu_count()}}, indent=2
        )
    )
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    asyncio.run(main())
