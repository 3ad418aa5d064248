"""Token endpoint throughput and latency against a real livekit-server, in one run.

Variants, each at concurrency 1, 16 and 64 (wrk, unique room per request):
  (a) DISPATCH_MODE=none — mint only, one uvicorn worker
  (b) DISPATCH_MODE=api — idempotent CreateDispatch through one long-lived LiveKitAPI client
  (c) a tutorial-style endpoint (bench/reference_endpoint.py): new LiveKitAPI per request
  (d) the in-process mint rate of AccessToken.to_jwt(): the ceiling
After (b) and (c) every room is checked with ListDispatch: a lost dispatch is a room without one;
then 20 requests are each sent twice, as a retrying caller would, and the agents per room counted.

    uv run python bench/token_endpoint.py [--duration 8] [--concurrency 1,16,64]

Needs `wrk` (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from livekit import api

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from local_stack import LiveKitServer, LocalStack, free_port  # noqa: E402

WRK_SCRIPT = REPO / "bench" / "wrk_token.lua"
RESULTS = REPO / "bench" / "results"


def mint_rate(seconds: float = 2.0) -> dict[str, float]:
    """Tokens per second from AccessToken.to_jwt() in this process, with and without roomConfig."""
    out: dict[str, float] = {}
    for label, with_dispatch in (("plain", False), ("room_config", True)):
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(200):
                tok = (
                    api.AccessToken("devkey", "x" * 40)
                    .with_identity(f"simulated_user-{n}")
                    .with_name("simulated_user")
                    .with_ttl(datetime.timedelta(minutes=15))
                    .with_grants(
                        api.VideoGrants(
                            room_join=True,
                            room=f"room-{n}",
                            can_publish=True,
                            can_subscribe=True,
                            can_publish_data=True,
                        )
                    )
                )
                if with_dispatch:
                    tok = tok.with_room_config(
                        api.RoomConfiguration(
                            agents=[api.RoomAgentDispatch(agent_name="a", metadata="{}")]
                        )
                    )
                tok.to_jwt()
                n += 1
        out[label] = n / (time.perf_counter() - started)
    return out


def run_wrk(url: str, concurrency: int, seconds: float, prefix: str, key: str | None) -> dict:
    threads = min(2, concurrency)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        prefix,
    ]
    if key:
        argv.append(key)
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("WRK_JSON "))
    stats = json.loads(line.removeprefix("WRK_JSON "))
    stats["rps"] = stats["requests"] / stats["duration_s"]
    return stats


async def count_dispatches(livekit: LiveKitServer, prefix: str, agent: str) -> dict[str, int]:
    """Rooms created under `prefix` and how many named dispatches each has."""
    async with api.LiveKitAPI(livekit.url, livekit.api_key, livekit.api_secret) as lkapi:
        rooms = [
            r.name
            for r in (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms
            if r.name.startswith(prefix + "-")
        ]
        sem = asyncio.Semaphore(16)

        async def one(room: str) -> int:
            async with sem:
                ds = await lkapi.agent_dispatch.list_dispatch(room)
                return sum(1 for d in ds if d.agent_name == agent)

        counts = await asyncio.gather(*(one(r) for r in rooms))
    return {
        "rooms": len(rooms),
        "exactly_one": sum(1 for c in counts if c == 1),
        "none": sum(1 for c in counts if c == 0),
        "more_than_one": sum(1 for c in counts if c > 1),
    }


async def retried_requests(
    livekit: LiveKitServer, url: str, key: str | None, agent: str, rooms: int = 20
) -> dict[str, int]:
    """The platform may retry a token request: send each of `rooms` requests twice, in order."""
    prefix = f"retry-{uuid.uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for i in range(rooms):
            body = {"room_name": f"{prefix}-{i}", "participant_name": "simulated_user"}
            for _ in range(2):
                (await client.post(url, json=body)).raise_for_status()
    return await count_dispatches(livekit, prefix, agent)


Variant = tuple[str, str | None, bool]  # url, API key, whether it dispatches


def start_variants(
    stack: LocalStack, livekit: LiveKitServer, agent: str, key: str
) -> dict[str, Variant]:
    """(a) this endpoint minting only, (b) this endpoint dispatching, (c) the tutorial endpoint."""
    variants: dict[str, Variant] = {}
    for label, mode in (("a_mint_only", "none"), ("b_api_dispatch", "api")):
        server = stack.start_token_server(
            livekit,
            env={
                "DISPATCH_MODE": mode,
                "AGENT_NAME": agent,
                "TOKEN_SERVER_API_KEYS": key,
                "TOKEN_SERVER_ALLOW_NO_AUTH": "0",
                "TOKEN_SERVER_LOG_LEVEL": "warning",
            },
        )
        variants[label] = (server.endpoint, key, mode == "api")
    ref_port = free_port()
    env = {**os.environ, **livekit.env(), "AGENT_NAME": agent}
    argv = [sys.executable, "-m", "uvicorn", "bench.reference_endpoint:app"]
    argv += ["--host", "127.0.0.1", "--port", str(ref_port)]
    argv += ["--log-level", "warning", "--no-access-log"]
    ref = stack.spawn("reference-endpoint", argv, env)
    ref.wait_http(f"http://127.0.0.1:{ref_port}/")
    variants["c_reference"] = (f"http://127.0.0.1:{ref_port}/livekit/token", None, True)
    return variants


def measure(
    results: dict[str, Any],
    variants: dict[str, Variant],
    livekit: LiveKitServer,
    agent: str,
    levels: list[int],
    duration: float,
) -> None:
    ceiling = results["mint_rate_per_s"]
    for label, (url, k, dispatches) in variants.items():
        rows = results["variants"][label] = {}
        for c in levels:
            prefix = f"{label}-{c}-{uuid.uuid4().hex[:6]}"
            print(f"{label} at concurrency {c} ...", file=sys.stderr)
            row = run_wrk(url, c, duration, prefix, k)
            if dispatches:
                row["dispatch_check"] = asyncio.run(count_dispatches(livekit, prefix, agent))
            row["ratio_to_mint_ceiling"] = row["rps"] / ceiling["plain"]
            rows[str(c)] = row
        if dispatches:
            results["retries"][label] = asyncio.run(retried_requests(livekit, url, k, agent))


def print_table(results: dict[str, Any]) -> None:
    ceiling = results["mint_rate_per_s"]
    print()
    print(
        f"(d) in-process AccessToken.to_jwt(): {ceiling['plain']:.0f}/s "
        f"({ceiling['room_config']:.0f}/s with roomConfig)"
    )
    header = (
        f"{'variant':<16}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'÷(d)':>7}{'non200':>8}  dispatches (rooms / exactly one / lost / dup)"
    )
    print(header)
    print("-" * len(header))
    for label, rows in results["variants"].items():
        for c, row in rows.items():
            check = row.get("dispatch_check")
            dcol = (
                f"{check['rooms']} / {check['exactly_one']} / {check['none']} / "
                f"{check['more_than_one']}"
                if check
                else "-"
            )
            print(
                f"{label:<16}{c:>5}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
                f"{row['ratio_to_mint_ceiling']:>7.2f}{row['non200']:>8}  {dcol}"
            )
    print("\nretried requests (each room's request sent twice): rooms / one agent / two agents")
    for label, check in results["retries"].items():
        print(f"  {label:<16}{check['rooms']} / {check['exactly_one']} / {check['more_than_one']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--out", type=Path, default=RESULTS / "token_endpoint.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench: needs wrk (apt-get install wrk / brew install wrk)", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    print("(d) minting in-process ...", file=sys.stderr)
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_s": args.duration,
        "mint_rate_per_s": mint_rate(),
        "variants": {},
        "retries": {},
    }
    agent, key = "bench-agent", "bench-key"
    with LocalStack() as stack:
        livekit = stack.start_livekit()
        variants = start_variants(stack, livekit, agent, key)
        measure(results, variants, livekit, agent, levels, args.duration)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
