"""Cluster benchmark: the same bursts on 1 node/1 worker, 2 nodes/1 worker, 2 nodes/2 workers.

LiveKit scales out with several livekit-server nodes on one Redis (rooms placed by its node
selector, job requests crossing nodes on the Redis bus) and agent workers registered with any
node. For each setup this starts a fresh local cluster (`LocalStack.start_cluster`: redis-server,
the nodes, one token server dispatching through node 0, the workers spread over the nodes), then
runs 20 and then 50 simulations at once in text mode through the harness, and reports per burst:
the success rate, agent join p50/p95 from the token request, rooms that saw two agents (from
every node's log), and CPU seconds per part (harness, redis, livekit nodes, token server,
workers). Every loop is bounded: a burst is `count` simulations with the harness's own timeouts.

    uv run python bench/cluster.py                      # the three setups, 20 and 50 at once
    uv run python bench/cluster.py --levels 5 --setups 1x1 2x2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispatch_reliability import agent_joins_by_room, stack_logs
from harness_load import (
    TEXT_SCENARIO,
    failure_summary,
    idle_processes_for,
    timing_stats,
    wait_prewarmed,
    worker_env,
)
from process_usage import group_cpu_seconds

from client_harness.caller.runner import run_many
from client_harness.caller.simulation import RunOptions
from client_harness.config import stack_config
from local_stack import Cluster, LocalStack

RESULTS = Path(__file__).resolve().parent / "results"
AGENT = "bench-cluster-agent"
MEMORY_SHARE = 0.5  # of available memory, for warm agent processes across all workers


def parts(cluster: Cluster) -> dict[str, list[int]]:
    """Process groups by part, for CPU accounting (a worker's group holds its job processes)."""
    return {
        "redis": [cluster.redis.process.pid] if cluster.redis else [],
        "livekit nodes": [n.process.pid for n in cluster.nodes],
        "token server": [t.process.pid for t in cluster.token_servers],
        "agent workers": [w.process.pid for w in cluster.workers],
    }


def rooms_in_lines(log: str, marker: str, rooms: set[str]) -> set[str]:
    """Which of `rooms` appear on a log line carrying `marker`."""
    lines = [line for line in log.splitlines() if marker in line]
    return {room for room in rooms if any(room in line for line in lines)}


def cpu_by_part(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(group_cpu_seconds(g) for g in pids) for name, pids in groups.items()}


def start(stack: LocalStack, nodes: int, workers: int, most: int) -> Cluster:
    """A cluster whose workers together take `most` calls at once, each warm before it starts."""
    calls = math.ceil(most / workers)
    idle = idle_processes_for(calls, MEMORY_SHARE / workers, "text")
    cluster = stack.start_cluster(
        AGENT,
        nodes=nodes,
        workers=workers,
        redis=True,
        agent_env=worker_env(calls, idle, "process", text_only=True),
        agent_timeout=600.0,
    )
    for worker in cluster.workers:
        wait_prewarmed(worker, idle)
    return cluster


async def burst(stack: LocalStack, cluster: Cluster, count: int) -> dict[str, Any]:
    endpoint = cluster.token_servers[0]
    config = stack_config(
        endpoint,
        cluster.node_for(endpoint),
        livekit_agent_name=AGENT,
        agent_join_timeout=90,
        request_timeout=30,
    )
    groups = parts(cluster)
    before = cpu_by_part(groups)
    run = await run_many(
        config, TEXT_SCENARIO, RunOptions(mode="text"), count=count, concurrency=count
    )
    after = cpu_by_part(groups)
    results = run.results
    joins = agent_joins_by_room(stack_logs(stack, "livekit-server-"))
    twice = {r.room_name for r in results if joins.get(r.room_name, 0) > 1}
    # what became of a second agent: it saw the first and left before speaking (the sample
    # agent's own check), or its dispatcher removed it once both were listed taken
    left = rooms_in_lines(stack_logs(stack, "agent-"), "already in the room; leaving", twice)
    removed = rooms_in_lines(
        stack_logs(stack, "token-server-"), "dispatch_duplicate_removed", twice
    )
    return {
        "simulations": count,
        "success_rate": sum(r.ok for r in results) / len(results),
        "agent_join_from_token_request_s": timing_stats(results)["agent_join_from_token_request_s"],
        "rooms_with_two_agents": len(twice),
        "second_agent_left_at_once": len(left),
        "second_agent_removed_by_dispatcher": len(removed - left),
        "rooms_without_agent": sum(1 for r in results if joins.get(r.room_name, 0) == 0),
        "cpu_s": {"harness": run.cpu_s} | {k: after[k] - before[k] for k in groups},
        "wall_s": run.wall_s,
        **failure_summary(results),
    }


async def setup(nodes: int, workers: int, levels: list[int]) -> dict[str, Any]:
    label = f"{nodes} node(s), {workers} worker(s)"
    print(f"{label}: starting ...", flush=True)
    with LocalStack() as stack:
        started = time.monotonic()
        cluster = await asyncio.to_thread(start, stack, nodes, workers, max(levels))
        out: dict[str, Any] = {"nodes": nodes, "workers": workers, "bursts": {}}
        out["start_s"] = round(time.monotonic() - started, 1)
        for count in levels:
            print(f"{label}: {count} simulations at once ...", flush=True)
            out["bursts"][str(count)] = await burst(stack, cluster, count)
    return out


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'setup':<22}{'sims':>5}{'ok':>7}{'join p50':>10}{'join p95':>10}"
        f"{'2 agents (left / removed)':>27}"
        f"{'cpu s: harness / redis / nodes / token / workers':>50}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        for count, b in row["bursts"].items():
            join = b["agent_join_from_token_request_s"]
            cpu = b["cpu_s"]
            cpus = " / ".join(
                f"{cpu[k]:.1f}"
                for k in ("harness", "redis", "livekit nodes", "token server", "agent workers")
            )
            name = f"{row['nodes']} node, {row['workers']} worker"
            two = (
                f"{b['rooms_with_two_agents']} ({b['second_agent_left_at_once']} / "
                f"{b['second_agent_removed_by_dispatcher']})"
            )
            lines.append(
                f"{name:<22}{count:>5}"
                f"{b['success_rate']:>7.0%}{fmt(join['p50']):>10}{fmt(join['p95']):>10}"
                f"{two:>27}{cpus:>50}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[20, 50])
    parser.add_argument(
        "--setups", nargs="+", default=["1x1", "2x1", "2x2"], help="NODESxWORKERS each"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    args = parser.parse_args()
    setups = [tuple(int(n) for n in s.split("x")) for s in args.setups]
    rows = [asyncio.run(setup(n, w, args.levels)) for n, w in setups]
    print()
    print(table(rows))
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setups": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
