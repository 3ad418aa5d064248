"""Sample agent latency and capacity against a real livekit-server, on this machine.

Measures, with the real `sample-agent start` worker (offline speech) and real rtc callers:
  - worker start: spawn → "registered worker", and → every idle process prewarmed;
  - memory: RSS/PSS of the worker, of each idle job process, and of a job process in a call;
  - per-turn latency over >= --turns turns of one call: from the end of the caller's speech (its
    last sample leaving the caller's audio source) to the first loud frame of the agent's answer
    arriving at the caller (the client harness's caller, `CallRoom`, and its energy VAD);
    p50/p95, with the framework's own per-turn split (ChatMessage.metrics and STT/TTS metrics
    events, read from the worker's log): VAD+endpointing, STT, LLM, TTS;
  - STT and TTS real-time factors (processing time / audio duration);
  - concurrency: N calls at once on one worker, N = 1, 2, ...; the largest N whose turn p95 stays
    at or under --p95-limit (2 s).

    uv run python bench/agent_latency.py [--turns 20] [--max-calls 4] [--turns-per-call 5]

Prints a table and writes bench/results/agent_latency-<timestamp>.json. The caller (this process)
runs on the same 2 cores, as does anything else running on the machine: note the load average
printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit import api
from process_usage import cpu_seconds, descendants, group_cpu_seconds, group_pss_mb, memory_mb

from client_harness.caller.call_room import CallRoom, Clock
from client_harness.measurement.recorder import Recorder
from client_harness.measurement.vad import VadSettings
from client_harness.report import percentile
from local_stack import AgentWorker, LiveKitServer, LocalStack
from offline_speech import Synthesizer, Voice
from offline_speech.audio import Int16Array, trim_silence

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
AGENT_NAME = "bench-agent"
QUESTIONS = (
    "What are your opening hours?",
    "Where are you located?",
    "Do you have vegetarian dishes on the menu?",
    "Hi, I would like to book a table for two tomorrow at seven.",
    "What is the weather like on Mars today?",
    "Can I cancel my reservation please?",
    "Thank you.",
)
GAP_AFTER_ANSWER = 0.6  # seconds the caller waits after the agent stops before speaking
# The caller's ears: a frame louder than -40 dBFS is the agent speaking, and 1.2 s of quiet ends
# its answer (longer than the pauses between the sentences of one answer).
AGENT_SPEECH = VadSettings(threshold_dbfs=-40.0, end_silence_seconds=1.2)
# The caller's questions keep 30 ms around their speech (quieter than -50 dBFS is not speech), so
# "end of the caller's speech" is the end of its last word, not of the synthesiser's padding.
QUESTION_MARGIN_MS = 30
QUESTION_FLOOR = 10 ** (-50 / 20)


def summary(values: list[float]) -> dict[str, float]:
    def rounded(value: float | None) -> float:
        return math.nan if value is None else round(value, 3)

    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "mean": rounded(statistics.fmean(values) if values else None),
        "max": rounded(max(values, default=None)),
    }


# -- memory ------------------------------------------------------------------------------------


def job_processes(worker: AgentWorker) -> list[int]:
    """The worker's job processes (children of its forkserver), not the forkserver itself."""
    root = worker.process.pid
    tree = descendants(root)
    parents = set(tree.values())
    return [pid for pid, parent in tree.items() if pid not in parents and parent != root]


def wait_idle_processes(worker: AgentWorker, count: int, within: float) -> float:
    started = time.monotonic()
    pattern = '"process prewarmed"'  # sample_agent's prewarm: job processes and job threads
    while time.monotonic() - started < within:
        if worker.process.log_text().count(pattern) >= count:
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"{count} idle processes not initialized after {within}s")


# -- calls -------------------------------------------------------------------------------------


@dataclass
class CallResult:
    room: str
    latencies: list[float] = field(default_factory=list)
    turn_times: list[tuple[float, float]] = field(default_factory=list)
    """(caller speech end, agent answer onset) per turn, wall-clock seconds."""
    joined_after: float = float("nan")
    greeting_after: float = float("nan")
    """Dispatch → the greeting's first audio at the caller: the call's first-audio latency."""
    errors: list[str] = field(default_factory=list)


async def one_call(
    livekit: LiveKitServer,
    lkapi: api.LiveKitAPI,
    voices: list[Int16Array],
    turns: int,
    after_greeting: Callable[[], Awaitable[None]] | None = None,
    before_hang_up: Callable[[], Awaitable[None]] | None = None,
) -> CallResult:
    """Dispatch the agent to a new room, hear its greeting, then `turns` question/answer turns."""
    room = f"bench-{uuid.uuid4()}"
    result = CallResult(room=room)
    metadata = json.dumps({"room_name": room, "agent_metadata": "", "custom": {}})
    token = (
        api.AccessToken(livekit.api_key, livekit.api_secret)
        .with_identity(f"caller-{room[-6:]}")
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )
    started = time.monotonic()
    await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room, metadata=metadata)
    )
    caller = CallRoom(Clock(), Recorder(), vad=AGENT_SPEECH)
    try:
        await caller.connect(livekit.url, token, within=60)
        await caller.publish_microphone(Synthesizer.sample_rate)
        await caller.wait_for_agent(within=60)
        result.joined_after = time.monotonic() - started
        greeting = await caller.next_utterance(after=0.0, within=60)
        if greeting is None:
            raise TimeoutError("timed out after 60s waiting for the agent's greeting")
        result.greeting_after = greeting.start + caller.clock.zero - started
        if after_greeting is not None:
            await after_greeting()
        last_end = greeting.end
        for i in range(turns):
            await asyncio.sleep(max(0.0, last_end + GAP_AFTER_ANSWER - caller.clock.now()))
            _, speech_end = await caller.speak(voices[i % len(voices)])
            answer = await caller.next_utterance(after=speech_end, within=30)
            if answer is None:
                result.errors.append(f"turn {i}: no answer within 30s")
                last_end = caller.clock.now()
                continue
            result.latencies.append(answer.start - speech_end)
            to_wall = caller.clock.zero + time.time() - time.monotonic()
            result.turn_times.append((speech_end + to_wall, answer.start + to_wall))
            last_end = answer.end
        if before_hang_up is not None:
            await before_hang_up()
    finally:
        await caller.close()
    return result


# -- the worker's own metrics --------------------------------------------------------------------


def framework_split(worker: AgentWorker, rooms: set[str]) -> dict[str, Any]:
    """Per-turn stages from the worker's log lines for `rooms` (see sample_agent.agent)."""
    eot, stt_delay, llm_ttft, tts_ttfb, e2e = [], [], [], [], []
    stt_rtf, tts_rtf, stt_dur = [], [], []
    for line in worker.process.log_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("room") not in rooms:
            continue
        if rec.get("message") == "turn":
            m = rec.get("turn_metrics") or {}
            if rec.get("role") == "user":
                if "end_of_turn_delay" in m:
                    eot.append(m["end_of_turn_delay"])
                if "transcription_delay" in m:
                    stt_delay.append(m["transcription_delay"])
            elif "e2e_latency" in m:  # answers, not the greeting
                e2e.append(m["e2e_latency"])
                if "llm_node_ttft" in m:
                    llm_ttft.append(m["llm_node_ttft"])
                if "tts_node_ttfb" in m:
                    tts_ttfb.append(m["tts_node_ttfb"])
        elif rec.get("message") == "pipeline metrics" and rec.get("audio_duration", 0) > 0:
            rtf = rec["duration"] / rec["audio_duration"]
            if rec.get("kind") == "stt_metrics":
                stt_rtf.append(rtf)
                stt_dur.append(rec["duration"])
            elif rec.get("kind") == "tts_metrics":
                tts_rtf.append(rtf)
    return {
        "end_of_turn_delay": summary(eot),
        "transcription_delay": summary(stt_delay),
        "stt_processing": summary(stt_dur),
        "llm_ttft": summary(llm_ttft),
        "tts_ttfb": summary(tts_ttfb),
        "framework_e2e_latency": summary(e2e),
        "stt_rtf": summary(stt_rtf),
        "tts_rtf": summary(tts_rtf),
    }


def transport_split(worker: AgentWorker, call: CallResult) -> dict[str, Any]:
    """Where the caller-side latency goes beyond the framework's own e2e_latency: the caller's
    audio reaching the agent's VAD (uplink) and the agent's first frame reaching the caller
    (downlink), matched turn by turn on the wall clock (one machine, one clock)."""
    stops, starts = [], []
    for line in worker.process.log_text().splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if rec.get("room") != call.room or rec.get("message") != "turn":
            continue
        m = rec.get("turn_metrics") or {}
        if rec.get("role") == "user" and "stopped_speaking_at" in m:
            stops.append(m["stopped_speaking_at"])
        elif rec.get("role") == "assistant" and "started_speaking_at" in m:
            starts.append(m["started_speaking_at"])
    uplink, downlink = [], []
    for speech_end, onset in call.turn_times:
        stop = min(stops, key=lambda t: abs(t - speech_end), default=None)
        start = min(starts, key=lambda t: abs(t - onset), default=None)
        if stop is not None and abs(stop - speech_end) < 1.0:
            uplink.append(stop - speech_end)
        if start is not None and abs(start - onset) < 1.0:
            downlink.append(onset - start)
    return {"uplink": summary(uplink), "downlink": summary(downlink)}


# -- the run ---------------------------------------------------------------------------------------


async def measure(
    livekit: LiveKitServer, worker: AgentWorker, args: argparse.Namespace
) -> dict[str, Any]:
    synth = Synthesizer(Voice.caller())
    margin = QUESTION_MARGIN_MS
    voices = [
        trim_silence(synth.synthesize(q), synth.sample_rate, margin, margin, QUESTION_FLOOR)
        for q in QUESTIONS
    ]
    lkapi = api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret)
    out: dict[str, Any] = {}
    try:
        # memory and CPU of a call: the warm job process that takes it, read during the call
        # (the thread executor has no job processes: the worker process runs the calls)
        warm = job_processes(worker) or [worker.process.pid]
        marks: list[tuple[float, float]] = []
        quiet = 5.0

        async def after_greeting() -> None:
            marks.append((time.monotonic(), cpu_seconds(warm)))
            await asyncio.sleep(quiet)  # listening to silence: the floor cost of a call
            marks.append((time.monotonic(), cpu_seconds(warm)))
            out["memory_in_call_mb"] = [memory_mb(pid) for pid in warm]

        async def before_hang_up() -> None:
            marks.append((time.monotonic(), cpu_seconds(warm)))

        seq = await one_call(livekit, lkapi, voices, args.turns, after_greeting, before_hang_up)
        (t0, c0), (t1, c1), (t2, c2) = marks
        out["cpu_cores_per_call"] = {
            "listening_quietly": round((c1 - c0) / (t1 - t0), 3),
            "in_conversation": round((c2 - c1) / (t2 - t1), 3),
        }
        out["sequential"] = {
            "turns": len(seq.latencies),
            "errors": seq.errors,
            "joined_after_s": round(seq.joined_after, 3),
            "greeting_after_s": round(seq.greeting_after, 3),
            "latency": summary(seq.latencies),
            "latencies": [round(x, 3) for x in seq.latencies],
            "framework": framework_split(worker, {seq.room}),
            "transport": transport_split(worker, seq),
        }
        await asyncio.sleep(3.0)

        levels: list[dict[str, Any]] = []
        group = worker.process.pid  # the worker's process group: it and every job process
        for n in range(1, args.max_calls + 1):
            cpu0, t0 = group_cpu_seconds(group), time.monotonic()
            sampler = asyncio.create_task(_peak_pss(group))
            calls = await asyncio.gather(
                *(
                    _staggered(i * 0.7, one_call(livekit, lkapi, voices, args.turns_per_call))
                    for i in range(n)
                )
            )
            sampler.cancel()
            peak_pss = await sampler
            worker_cores = (group_cpu_seconds(group) - cpu0) / (time.monotonic() - t0)
            lat = [x for c in calls for x in c.latencies]
            errors = [e for c in calls for e in c.errors]
            level: dict[str, Any] = {
                "calls": n,
                "latency": summary(lat),
                "errors": errors,
                "joined_after_s": [round(c.joined_after, 2) for c in calls],
                "greeting_after": summary([c.greeting_after for c in calls]),
                # the whole worker (its process and every job process) over the level
                "worker_cores": round(worker_cores, 3),
                "worker_cores_per_call": round(worker_cores / n, 3),
                "worker_peak_pss_mb": round(peak_pss),
                "framework": framework_split(worker, {c.room for c in calls}),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
            levels.append(level)
            print(
                f"  {n} call(s) at once: p50 {level['latency']['p50']:.2f}s "
                f"p95 {level['latency']['p95']:.2f}s over {len(lat)} turns, "
                f"{len(errors)} missed; first audio p50 "
                f"{level['greeting_after']['p50']:.2f}s; worker {worker_cores:.2f} cores, "
                f"{peak_pss:.0f} MB PSS",
                flush=True,
            )
            await asyncio.sleep(3.0)
            if errors or level["latency"]["p95"] > args.p95_limit:
                break
        out["concurrency"] = levels
        ok = [lv["calls"] for lv in levels if not lv["errors"]]
        ok = [n for n in ok if levels[n - 1]["latency"]["p95"] <= args.p95_limit]
        out["max_calls_within_p95_limit"] = max(ok) if ok else 0
        if ok:
            top = levels[max(ok) - 1]
            out["calls_per_worker_core"] = round(top["calls"] / top["worker_cores"], 2)
    finally:
        await lkapi.aclose()
    return out


async def _peak_pss(pgid: int) -> float:
    """The largest PSS of the process group seen, sampled every 0.5 s until cancelled."""
    peak = 0.0
    try:
        while True:
            peak = max(peak, group_pss_mb(pgid))
            await asyncio.sleep(0.5)
    except asyncio.CancelledError:
        return peak


async def _staggered(delay: float, coro: Any) -> CallResult:
    await asyncio.sleep(delay)
    result: CallResult = await coro
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="turns of the sequential call")
    parser.add_argument("--turns-per-call", type=int, default=5, help="turns per concurrent call")
    parser.add_argument("--max-calls", type=int, default=4, help="highest concurrency tried")
    parser.add_argument("--idle-processes", type=int, default=1)
    parser.add_argument("--p95-limit", type=float, default=2.0)
    parser.add_argument("--agent-env", action="append", default=[], help="KEY=VALUE for agent")
    args = parser.parse_args()

    agent_env = {
        "AGENT_IDLE_PROCESSES": str(args.idle_processes),
        "AGENT_MAX_CALLS": str(args.max_calls + 1),
    }
    agent_env.update(dict(kv.split("=", 1) for kv in args.agent_env))
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "agent_env": agent_env,
    }
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with LocalStack() as stack:
        livekit = stack.start_livekit()
        started = time.monotonic()
        worker = stack.start_agent(livekit, AGENT_NAME, env=agent_env, timeout=180)
        registered = time.monotonic() - started
        idle_ready = wait_idle_processes(worker, args.idle_processes, 180) + registered
        time.sleep(1.0)
        results["worker_start_s"] = {
            "registered": round(registered, 2),
            "idle_processes_ready": round(idle_ready, 2),
        }
        results["memory_idle_mb"] = {
            "worker_main": memory_mb(worker.process.pid),
            "idle_job_processes": [memory_mb(pid) for pid in job_processes(worker)],
        }
        print(f"worker registered in {registered:.1f}s; measuring…", flush=True)
        try:
            results.update(asyncio.run(measure(livekit, worker, args)))
        finally:
            RESULTS.mkdir(parents=True, exist_ok=True)
            worker_log = RESULTS / f"agent_latency-{stamp}-worker.log"
            worker_log.write_text(worker.process.log_text())
        results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results["worker_log"] = str(worker_log.relative_to(REPO))

    print_table(results)
    path = RESULTS / f"agent_latency-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {path.relative_to(REPO)}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    seq = r["sequential"]
    fw = seq["framework"]
    lat = seq["latency"]
    rows = [
        ("worker start → registered", f"{r['worker_start_s']['registered']:.2f} s"),
        (
            "worker start → idle processes ready",
            f"{r['worker_start_s']['idle_processes_ready']:.2f} s",
        ),
        ("memory: worker main (RSS)", f"{r['memory_idle_mb']['worker_main']['rss']:.0f} MB"),
    ]
    for i, m in enumerate(r["memory_idle_mb"]["idle_job_processes"]):
        rows.append(
            (f"memory: idle job process {i} (RSS / PSS)", f"{m['rss']:.0f} / {m['pss']:.0f} MB")
        )
    for i, m in enumerate(r.get("memory_in_call_mb", [])):
        rows.append(
            (
                f"memory: job process in a call (RSS / PSS) {i}",
                f"{m['rss']:.0f} / {m['pss']:.0f} MB",
            )
        )
    cpu = r["cpu_cores_per_call"]
    rows.append(
        (
            "CPU of a call: listening / in conversation",
            f"{cpu['listening_quietly']:.2f} / {cpu['in_conversation']:.2f} cores",
        )
    )
    rows += [
        (f"turn latency, 1 call, {seq['turns']} turns: p50", f"{lat['p50']:.3f} s"),
        ("  p95 / max", f"{lat['p95']:.3f} / {lat['max']:.3f} s"),
        (
            "  split (p50): end-of-turn delay (VAD + endpointing)",
            f"{fw['end_of_turn_delay']['p50']:.3f} s",
        ),
        (
            "  split (p50): transcript ready after speech end",
            f"{fw['transcription_delay']['p50']:.3f} s",
        ),
        ("  split (p50): STT processing", f"{fw['stt_processing']['p50']:.3f} s"),
        ("  split (p50): LLM time to first token", f"{fw['llm_ttft']['p50']:.4f} s"),
        ("  split (p50): TTS time to first byte", f"{fw['tts_ttfb']['p50']:.3f} s"),
        ("  framework e2e_latency (p50)", f"{fw['framework_e2e_latency']['p50']:.3f} s"),
        (
            "  caller speech end → agent VAD's speech end (p50)",
            f"{seq['transport']['uplink']['p50']:.3f} s",
        ),
        (
            "  agent's first frame → caller hears it (p50)",
            f"{seq['transport']['downlink']['p50']:.3f} s",
        ),
        ("STT real-time factor (p50)", f"{fw['stt_rtf']['p50']:.3f}"),
        ("TTS real-time factor (p50)", f"{fw['tts_rtf']['p50']:.3f}"),
    ]
    rows.append(
        ("first audio (dispatch → greeting at the caller)", f"{seq['greeting_after_s']:.3f} s")
    )
    for lv in r["concurrency"]:
        rows.append(
            (
                f"{lv['calls']} call(s) at once: turn p50 / p95",
                f"{lv['latency']['p50']:.2f} / {lv['latency']['p95']:.2f} s"
                + (f" ({len(lv['errors'])} missed)" if lv["errors"] else ""),
            )
        )
        rows.append(
            (
                "  first audio p50 / max; worker cores (per call); worker peak PSS",
                f"{lv['greeting_after']['p50']:.2f} / {lv['greeting_after']['max']:.2f} s; "
                f"{lv['worker_cores']:.2f} ({lv['worker_cores_per_call']:.2f}); "
                f"{lv['worker_peak_pss_mb']} MB",
            )
        )
    rows.append(("calls at once with turn p95 <= 2 s", str(r["max_calls_within_p95_limit"])))
    if "calls_per_worker_core" in r:
        rows.append(("  calls per core of the worker's CPU there", str(r["calls_per_worker_core"])))
    rows.append(
        (
            "load average 1m at start / end",
            f"{r['machine']['load_avg_at_start'][0]} / {r['machine']['load_avg_at_end'][0]}",
        )
    )
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    sys.exit(main())
