"""Dispatch reliability benchmark: bursts of simulations against one worker with fewer slots than
the burst, with the token server's dispatch following (healing) on and off in the same run.

livekit-server offers each agent job once; a job offered while the worker is full is dropped.
With healing on, the token server follows each dispatch and dispatches again until a worker takes
it, so callers past the worker's slots wait for a call to end instead of waiting forever.

For each burst (default 2, 5, 10, 20) and each mode, a fresh stack: livekit-server, the token
endpoint (DISPATCH_RETRY=1 or 0), one text-only sample agent with max(1, burst // 2) slots. The
harness runs the burst in text mode (a greeting, one turn, hang up). Reported per burst and mode:
- the share of callers who got an agent;
- agent join from the token request, p50 / p95;
- the token request's own latency, p50 (the happy path must not pay for the following);
- dispatches per simulation (from the token server's `dispatch_fate` lines);
- for callers who waited for a slot: from the worker reporting a free slot to their agent joining,
  p50 / p95 (from the worker's and livekit-server's own logs);
- CPU seconds of the token server process (the watcher runs inside it).

    uv run python bench/dispatch_reliability.py
    uv run python bench/dispatch_reliability.py --bursts 5 20 --join-timeout 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from process_usage import group_cpu_seconds

from client_harness.caller.simulation import RunOptions, run_simulation
from client_harness.caller.speech import Speech
from client_harness.config import stack_config
from client_harness.measurement.metrics import SimulationResult
from client_harness.report import percentile
from client_harness.scenario import Scenario, Turn
from local_stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AGENT = "bench-reliability-agent"
SCENARIO = Scenario(
    name="short-call",
    turns=(Turn("Hi, I would like to book a table for two.", ("table",)),),
    greeting_wait_seconds=30,
    response_timeout_seconds=30,
)


@dataclass
class Timed:
    result: SimulationResult
    started: float  # monotonic, when its token request was sent

    @property
    def joined_at(self) -> float | None:
        s = self.result.agent_join_from_token_request_s
        return None if s is None else self.started + s

    @property
    def ended_at(self) -> float:
        return self.started + (self.result.duration_s or 0.0)


async def run_burst(burst: int, healing: bool, join_timeout: float, logs: Path | None) -> dict:
    log_dir = logs / f"burst{burst}-{'on' if healing else 'off'}" if logs else None
    with LocalStack(log_dir=log_dir) as stack:
        return await _run_burst(stack, burst, healing, join_timeout)


async def _run_burst(stack: LocalStack, burst: int, healing: bool, join_timeout: float) -> dict:
    livekit = stack.start_livekit()
    endpoint = stack.start_token_server(
        livekit, env={"AGENT_NAME": AGENT, "DISPATCH_RETRY": "1" if healing else "0"}
    )
    slots = max(1, burst // 2)
    stack.start_agent(
        livekit,
        AGENT,
        env={
            "AGENT_TEXT_ONLY": "1",
            "AGENT_MAX_CALLS": str(slots),
            "LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS": "0",
        },
        timeout=180,
    )
    config = stack_config(
        endpoint, livekit, livekit_agent_name=AGENT, agent_join_timeout=join_timeout
    )
    cpu_before = group_cpu_seconds(endpoint.process.pid)
    timed: list[Timed] = []
    speech = Speech(transcribe=False)  # text mode: nothing is spoken or transcribed
    async with httpx.AsyncClient() as client:

        async def one(index: int) -> None:
            started = time.monotonic()
            result = await run_simulation(
                config, SCENARIO, RunOptions(mode="text"), speech, client, index
            )
            timed.append(Timed(result, started))

        await asyncio.gather(*(one(i) for i in range(burst)))
    await asyncio.sleep(1.0)  # the last fate lines
    cpu = group_cpu_seconds(endpoint.process.pid) - cpu_before

    served = [t for t in timed if t.joined_at is not None]
    joins = [t.result.agent_join_from_token_request_s or 0.0 for t in served]
    tokens = [t.result.token_request_s for t in timed if t.result.token_request_s is not None]
    fates = _fates(endpoint.process.log_text())
    dispatches = [
        int(fates[t.result.room_name]["dispatches"]) for t in timed if t.result.room_name in fates
    ]
    after_free = _join_after_slot_freed(
        stack_logs(stack, "agent-"), stack_logs(stack, "livekit-server-"), served, slots
    )
    return {
        "burst": burst,
        "healing": healing,
        "worker_slots": slots,
        "got_agent": len(served) / burst,
        "join_p50_s": percentile(joins, 50),
        "join_p95_s": percentile(joins, 95),
        "token_request_p50_s": percentile(tokens, 50),
        "dispatches_per_simulation": (sum(dispatches) / len(dispatches)) if dispatches else 1.0,
        "waited_join_after_slot_free_p50_s": percentile(after_free, 50),
        "waited_join_after_slot_free_p95_s": percentile(after_free, 95),
        "waited": len(after_free),
        "token_server_cpu_s": round(cpu, 3),
        "surplus_jobs_removed": endpoint.process.log_text().count("dispatch_duplicate_removed"),
        "rooms_with_two_agents": rooms_with_two_agents(stack_logs(stack, "livekit-server-")),
        "failures": sorted(
            {f"{t.result.failed_step}: {t.result.error}"[:160] for t in timed if not t.result.ok}
        ),
    }


def stack_logs(stack: LocalStack, prefix: str) -> str:
    return "".join(p.read_text(errors="replace") for p in stack.log_dir.glob(f"{prefix}*.log"))


_AVAILABLE = re.compile(
    r'"worker is below capacity, marking as available".*?"timestamp": "([^"]+)"'
)
_AGENT_JOIN = re.compile(
    r'^(\S+)\s.*starting RTC session\s+\{"room": "([^"]+)".*?"participant": "agent-', re.M
)


def _join_after_slot_freed(
    agent_log: str, server_log: str, served: list[Timed], slots: int
) -> list[float]:
    """For each caller past the worker's slots (it had to wait for a call to end): from the
    worker telling livekit-server it has a free slot again to that caller's agent starting to
    join, both from the processes' own logs (one machine, one clock)."""
    freed = sorted(_ts(m) for m in _AVAILABLE.findall(agent_log))
    joins = {room: _ts(at) for at, room in _AGENT_JOIN.findall(server_log)}
    waited = sorted(served, key=lambda t: t.joined_at or 0.0)[slots:]
    out = []
    for t in waited:
        joined = joins.get(t.result.room_name)
        before = [f for f in freed if joined is not None and f <= joined]
        if joined is not None and before:
            out.append(joined - before[-1])
    return out


def agent_joins_by_room(server_log: str) -> dict[str, int]:
    """How many agent participants started to join each room (livekit-server's own log)."""
    agents: dict[str, int] = {}
    for _, room in _AGENT_JOIN.findall(server_log):
        agents[room] = agents.get(room, 0) + 1
    return agents


def rooms_with_two_agents(server_log: str) -> int:
    """Rooms in which more than one agent participant started to join."""
    return sum(1 for n in agent_joins_by_room(server_log).values() if n > 1)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _fates(log: str) -> dict[str, dict[str, Any]]:
    found = {}
    for line in log.splitlines():
        start = line.find('{"event":"dispatch_fate"')
        if start >= 0:
            record = json.loads(line[start:])
            found[record["room"]] = record
    return found


def _fmt(v: float | None, unit: str = "s") -> str:
    return "—" if v is None else f"{v:.2f} {unit}".strip()


async def happy_path(samples: int) -> dict:
    """The token request's own latency when the first offer is taken, following on and off side
    by side: one server, one worker with slots to spare, two endpoints, requests interleaved."""
    with LocalStack() as stack:
        livekit = stack.start_livekit()
        endpoints = {
            mode: stack.start_token_server(
                livekit, env={"AGENT_NAME": AGENT, "DISPATCH_RETRY": flag}
            )
            for mode, flag in (("on", "1"), ("off", "0"))
        }
        stack.start_agent(
            livekit,
            AGENT,
            env={
                "AGENT_TEXT_ONLY": "1",
                "AGENT_MAX_CALLS": "20",
                "AGENT_IDLE_PROCESSES": "3",
                "AGENT_CALLER_TIMEOUT": "1",  # nobody joins: each agent leaves after 1 s
            },
            timeout=180,
        )
        latency: dict[str, list[float]] = {"on": [], "off": []}
        async with httpx.AsyncClient() as client:
            for i in range(samples):
                for mode, endpoint in endpoints.items():
                    started = time.perf_counter()
                    resp = await client.post(endpoint.endpoint, json={"room_name": f"h{mode}{i}"})
                    latency[mode].append(time.perf_counter() - started)
                    resp.raise_for_status()
                await asyncio.sleep(0.2)
        taken = _fates(endpoints["on"].process.log_text())
        two_agents = rooms_with_two_agents(stack_logs(stack, "livekit-server-"))
    return {
        "rooms_with_two_agents": two_agents,
        "samples": samples,
        "on_p50_ms": 1000 * (percentile(latency["on"], 50) or 0),
        "on_p95_ms": 1000 * (percentile(latency["on"], 95) or 0),
        "off_p50_ms": 1000 * (percentile(latency["off"], 50) or 0),
        "off_p95_ms": 1000 * (percentile(latency["off"], 95) or 0),
        "on_taken_first_offer": sum(1 for f in taken.values() if f["dispatches"] == 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--join-timeout", type=float, default=30.0)
    parser.add_argument("--happy-samples", type=int, default=60)
    parser.add_argument("--keep-logs", type=Path, help="keep every process's log under this folder")
    args = parser.parse_args()
    print("happy path (first offer taken), following on and off ...", flush=True)
    happy = await happy_path(args.happy_samples)
    rows = []
    for burst in args.bursts:
        for healing in (True, False):  # side by side, same run
            print(f"burst {burst}, healing {'on' if healing else 'off'} ...", flush=True)
            rows.append(await run_burst(burst, healing, args.join_timeout, args.keep_logs))
    print()
    print(
        "| burst | slots | healing | got an agent | join p50 / p95 | token p50 | dispatches/sim "
        "| waited: slot freed → agent joins p50 / p95 (n) | surplus jobs removed "
        "| rooms with 2 agents | token-server CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        token_ms = r["token_request_p50_s"] and r["token_request_p50_s"] * 1000
        waited = (
            f"{_fmt(r['waited_join_after_slot_free_p50_s'])} / "
            f"{_fmt(r['waited_join_after_slot_free_p95_s'])} ({r['waited']})"
        )
        print(
            f"| {r['burst']} | {r['worker_slots']} | {'on' if r['healing'] else 'off'} "
            f"| {r['got_agent']:.0%} | {_fmt(r['join_p50_s'])} / {_fmt(r['join_p95_s'])} "
            f"| {_fmt(token_ms, 'ms')} | {r['dispatches_per_simulation']:.2f} | {waited} "
            f"| {r['surplus_jobs_removed']} | {r['rooms_with_two_agents']} "
            f"| {r['token_server_cpu_s']:.2f} s |"
        )
    print(
        f"\nHappy path, {happy['samples']} requests each, interleaved: token request p50 / p95 "
        f"{happy['on_p50_ms']:.1f} / {happy['on_p95_ms']:.1f} ms following on, "
        f"{happy['off_p50_ms']:.1f} / {happy['off_p95_ms']:.1f} ms off "
        f"(ratio of p50s {happy['on_p50_ms'] / happy['off_p50_ms']:.2f}); "
        f"{happy['on_taken_first_offer']} taken on the first offer; "
        f"{happy['rooms_with_two_agents']} rooms saw two agents"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "dispatch_reliability.json"
    out.write_text(
        json.dumps(
            {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "happy_path": happy, "rows": rows},
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
