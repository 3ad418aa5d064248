"""How many spoken simulations one harness process carries, and what each costs it.

A remote deployment is simulated on one machine by pinning: this process, livekit-server, the
token server and the playback agent (bench/playback_agent.py: a cheap agent that answers each
caller turn after a fixed delay and times the latency it produced) run on core 0; the harness,
`python -m client_harness run --mode voice`, runs as its own process on core 1. For each level N
it runs N booking calls at once (full voice: caller TTS from the cache, agent audio through the
energy VAD, Whisper transcripts, the stereo recording) and reports:

- the harness's CPU seconds per simulated minute (its run phase, as its report records it) and
  the share of its core that was;
- how busy each core was (the stack's core must not be the limit for the figure to be the
  harness's);
- its peak PSS, and the memory each simulation adds (peak PSS at N minus at 1, over N - 1);
- turn-latency error: per turn, the harness's response latency minus the playback agent's own
  measure of the same turn, less the median of that difference for the same turn of the script
  at level 1 (the transport and the two VADs' fixed offsets, which differ with how each line
  ends). A level is sustained when every simulation passed and p95 |error| is under 50 ms.

    uv run python bench/spoken_capacity.py                     # levels 1 2 4 8 12 16, 3 reps
    uv run python bench/spoken_capacity.py --levels 1 8 --reps 1
    git worktree add /tmp/old <commit> && \
        uv run python bench/spoken_capacity.py --levels 1 4 8 --compare /tmp/old
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from playback_agent import Playback, TurnTruth
from process_usage import memory_mb

from local_stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STACK_CORE, HARNESS_CORE = 0, 1
ERROR_LIMIT_S = 0.050


def harness_argv(livekit: Any, endpoint: str, level: int, out: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "client_harness",
        "run",
        "--generate-token-endpoint",
        endpoint,
        "--livekit-url",
        livekit.url,
        "--livekit-api-url",
        livekit.http_url,
        "--livekit-api-key",
        livekit.api_key,
        "--livekit-api-secret",
        livekit.api_secret,
        "--mode",
        "voice",
        "--count",
        str(level),
        "--concurrency",
        str(level),
        "--connect-parallelism",
        str(level),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


async def run_harness(argv: list[str], root: Path) -> tuple[int, float]:
    """Run the harness pinned to its core; its exit code and peak PSS (MB, sampled each 0.5 s)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=root,  # `python -m` imports the harness from here first
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=lambda: os.sched_setaffinity(0, {HARNESS_CORE}),
    )
    peak = 0.0
    while proc.returncode is None:
        try:
            peak = max(peak, memory_mb(proc.pid)["pss"])
        except (OSError, KeyError):
            pass
        try:
            await asyncio.wait_for(proc.wait(), 0.5)
        except TimeoutError:
            continue
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode(errors="replace").strip()
    if proc.returncode not in (0, 1):
        print(f"harness exited {proc.returncode}: {err[-800:]}", file=sys.stderr)
    return proc.returncode or 0, peak


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies since boot, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            values = [int(x) for x in fields]
            idle = values[3] + values[4]  # idle + iowait
            out[int(name[3:])] = (sum(values) - idle, sum(values))
    return out


def core_busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> list[float]:
    """Share of each core that was busy between two core_times() readings (whoever used it)."""
    return [
        (after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1])
        for c in (STACK_CORE, HARNESS_CORE)
    ]


def offsets(report: dict[str, Any], truth: dict[tuple[str, int], float]) -> list[tuple[int, float]]:
    """Per answered turn: its index, and the harness's response latency minus the agent's own
    measure of it."""
    out = []
    for sim in report["simulations"]:
        for turn in sim["turns"]:
            latency = turn.get("response_latency_s")
            key = (sim["room_name"], turn["index"])
            if latency is not None and key in truth:
                out.append((turn["index"], latency - truth[key]))
    return out


def path_delays(report: dict[str, Any], truths: list[TurnTruth]) -> dict[str, list[float]]:
    """Per answered turn, on the shared wall clock: caller speech end as the harness sent it →
    as the agent heard it, and the agent's first reply frame sent → as the harness heard it.
    Which of the two grows shows which side's audio path a turn error comes from."""
    by_key = {(t.room, t.turn): t for t in truths}
    up, down = [], []
    for sim in report["simulations"]:
        zero = sim.get("started_at")
        for turn in sim["turns"]:
            truth = by_key.get((sim["room_name"], turn["index"]))
            if zero is None or truth is None or turn.get("agent_start") is None:
                continue
            up.append(truth.heard_end_unix - (zero + turn["caller_end"]))
            down.append(zero + turn["agent_start"] - truth.reply_unix)
    return {"caller_to_agent_s": up, "agent_to_caller_s": down}


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def one_run(
    playback: Playback,
    livekit: Any,
    endpoint: str,
    level: int,
    out: Path,
    extra: list[str],
    root: Path,
) -> dict[str, Any]:
    playback.truths.clear()
    playback.errors.clear()
    cores = core_times()
    code, peak_pss = await run_harness(harness_argv(livekit, endpoint, level, out, extra), root)
    stack_busy, harness_core_busy = core_busy(cores, core_times())
    report = json.loads((out / "report.json").read_text())
    sims = report["simulations"]
    minutes = sum(s.get("duration_s") or 0.0 for s in sims) / 60.0
    cpu = report["meta"]["harness_cpu_s"]
    truth = {(t.room, t.turn): t.latency_s for t in playback.truths}
    return {
        "level": level,
        "harness": str(root),
        "exit_code": code,
        "passed": sum(1 for s in sims if s.get("ok")),
        "turns_answered": sum(
            1 for s in sims for t in s["turns"] if t.get("response_latency_s") is not None
        ),
        "turns_expected": level * 3,
        "harness_cpu_s": cpu,
        "wall_s": report["meta"]["wall_s"],
        "simulated_minutes": minutes,
        "cpu_s_per_simulated_minute": cpu / minutes if minutes else None,
        "core_share": cpu / report["meta"]["wall_s"],
        "stack_core_busy": stack_busy,
        "harness_core_busy": harness_core_busy,
        "peak_pss_mb": peak_pss,
        "offsets_s": offsets(report, truth),
        **path_delays(report, playback.truths),
        "agent_latency_s": sorted(truth.values()),
        "agent_errors": list(playback.errors),
    }


def pooled(reps: list[dict[str, Any]], key: str) -> list[float]:
    return [v for r in reps for v in r.get(key, [])]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level, medians (min–max) over repetitions; errors against level 1's median offset."""
    by_turn: dict[int, list[float]] = {}
    for r in runs:
        if r["level"] == 1:
            for turn, offset in r["offsets_s"]:
                by_turn.setdefault(turn, []).append(offset)
    base = {turn: statistics.median(values) for turn, values in by_turn.items()}
    base_pss = statistics.median([r["peak_pss_mb"] for r in runs if r["level"] == 1] or [0.0])
    rows = []
    for level in sorted({r["level"] for r in runs}):
        reps = [r for r in runs if r["level"] == level]
        errors = [abs(o - base[t]) for r in reps for t, o in r["offsets_s"] if t in base]
        cpu = [r["cpu_s_per_simulated_minute"] for r in reps if r["cpu_s_per_simulated_minute"]]
        pss = [r["peak_pss_mb"] for r in reps]
        passed = all(r["passed"] == level for r in reps)
        err95 = p95(errors)
        rows.append(
            {
                "level": level,
                "reps": len(reps),
                "all_passed": passed,
                "turns_answered": f"{sum(r['turns_answered'] for r in reps)}"
                f"/{sum(r['turns_expected'] for r in reps)}",
                "cpu_s_per_sim_min": statistics.median(cpu) if cpu else None,
                "cpu_s_per_sim_min_range": [min(cpu), max(cpu)] if cpu else None,
                "core_share": statistics.median([r["core_share"] for r in reps]),
                "stack_core_busy": statistics.median([r.get("stack_core_busy", 0.0) for r in reps]),
                "peak_pss_mb": statistics.median(pss),
                "pss_per_added_sim_mb": (statistics.median(pss) - base_pss) / (level - 1)
                if level > 1
                else None,
                "latency_error_p95_ms": None if err95 is None else err95 * 1000,
                "caller_to_agent_p95_ms": ms(p95(pooled(reps, "caller_to_agent_s"))),
                "agent_to_caller_p95_ms": ms(p95(pooled(reps, "agent_to_caller_s"))),
                "latency_error_max_ms": max(errors) * 1000 if errors else None,
                "sustained": passed and err95 is not None and err95 < ERROR_LIMIT_S,
            }
        )
    return rows


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'sims':>4} {'reps':>4} {'passed':>6} {'turns':>7} {'CPU s/sim-min':>13} "
        f"{'core':>5} {'stack core':>10} {'peak PSS MB':>11} {'MB/added sim':>12} "
        f"{'err p95 ms':>10} {'err max ms':>10} {'sustained':>9} {'path p95 ms up/down':>19}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        cpu = r["cpu_s_per_sim_min"]
        rng = r["cpu_s_per_sim_min_range"]
        cpu_s = f"{cpu:.2f}" if cpu is not None else "-"
        if rng and r["reps"] > 1:
            cpu_s = f"{cpu:.1f} ({rng[0]:.1f}-{rng[1]:.1f})"
        added = r["pss_per_added_sim_mb"]
        e95, emax = r["latency_error_p95_ms"], r["latency_error_max_ms"]
        lines.append(
            f"{r['level']:>4} {r['reps']:>4} {r['all_passed']!s:>6} {r['turns_answered']:>7} "
            f"{cpu_s:>13} {r['core_share']:>5.2f} {r['stack_core_busy']:>10.2f} "
            f"{r['peak_pss_mb']:>11.0f} "
            f"{'-' if added is None else f'{added:.1f}':>12} "
            f"{'-' if e95 is None else f'{e95:.0f}':>10} "
            f"{'-' if emax is None else f'{emax:.0f}':>10} {r['sustained']!s:>9} "
            f"{fmt_ms(r.get('caller_to_agent_p95_ms'))}/{fmt_ms(r.get('agent_to_caller_p95_ms'))}"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.2, help="agent reply delay, s")
    parser.add_argument(
        "--no-transcribe", action="store_true", help="run the harness without its STT"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="another checkout (e.g. a git worktree of an older commit): its harness runs "
        "beside this one, interleaved, and the ratios are printed",
    )
    parser.add_argument("--summarize", type=Path, help="only print the table of a results JSON")
    return parser.parse_args()


def print_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table per harness checkout (each against its own level-1 reference), then the
    ratios of this checkout's medians to the other's, level by level."""
    roots = list(dict.fromkeys(r.get("harness", str(ROOT)) for r in runs))
    tables: dict[str, list[dict[str, Any]]] = {}
    for root in roots:
        rows = summarize([r for r in runs if r.get("harness", str(ROOT)) == root])
        tables[root] = rows
        print(f"\nharness: {root}")
        print(table(rows))
        sustained = [r["level"] for r in rows if r["sustained"]]
        print(f"largest level sustained: {max(sustained) if sustained else 'none'}")
    if len(roots) == 2:
        this, other = ({r["level"]: r for r in tables[root]} for root in roots)
        print(f"\n{roots[0]} / {roots[1]}, same run:")
        for level in sorted(set(this) & set(other)):
            a, b = this[level], other[level]
            cpu = (a["cpu_s_per_sim_min"] or 0) / (b["cpu_s_per_sim_min"] or 1)
            print(
                f"  {level:>3} sims: CPU per simulated minute {cpu:.2f}, "
                f"peak PSS {a['peak_pss_mb'] / b['peak_pss_mb']:.2f}"
            )
    return [row for rows in tables.values() for row in rows]


async def main() -> None:
    args = parse_args()
    if args.summarize:
        print_summary(json.loads(args.summarize.read_text())["runs"])
        return
    if 1 not in args.levels:
        args.levels = [1, *args.levels]
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores: the stack on one, the harness on the other")
    # Before any thread exists, so every thread and child of this process inherits the core.
    os.sched_setaffinity(0, {STACK_CORE})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    extra = ["--no-transcribe"] if args.no_transcribe else []
    runs: list[dict[str, Any]] = []
    with LocalStack() as stack:
        livekit = stack.start_livekit()
        endpoint = stack.start_token_server(livekit, env={"DISPATCH_MODE": "none"})
        playback = Playback(livekit.url, livekit.http_url, livekit.api_key, livekit.api_secret)
        playback.delay_s = args.delay
        stop = asyncio.Event()
        serving = asyncio.create_task(playback.serve(stop))
        roots = [ROOT] + ([args.compare.resolve()] if args.compare else [])
        for rep in range(args.reps):
            # levels (and checkouts) interleaved within each repetition
            for level, (n, root) in itertools.product(args.levels, enumerate(roots)):
                out = RESULTS / f"spoken_capacity-{stamp}" / f"n{level}-r{rep}-h{n}"
                run = await one_run(playback, livekit, endpoint.endpoint, level, out, extra, root)
                runs.append(run)
                print(
                    f"rep {rep + 1}/{args.reps} harness {n} sims {level:>3}: "
                    f"passed {run['passed']}/{level}, "
                    f"turns {run['turns_answered']}/{run['turns_expected']}, "
                    f"CPU {run['cpu_s_per_simulated_minute'] or 0:.2f} s/sim-min, "
                    f"peak PSS {run['peak_pss_mb']:.0f} MB"
                    + (f", agent errors: {run['agent_errors'][:2]}" if run["agent_errors"] else ""),
                    flush=True,
                )
        stop.set()
        await serving
    rows = print_summary(runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"spoken_capacity-{stamp}.json"
    path.write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    print(f"written: {path}")


if __name__ == "__main__":
    asyncio.run(main())
