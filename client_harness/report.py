"""Run reports: a summary table (success rate, p50/p95 of each timing), JSON, JUnit XML."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from client_harness.measurement.metrics import SimulationResult

TIMINGS = (
    ("token_request_s", "token request"),
    ("connect_s", "connect"),
    ("agent_join_from_connect_s", "agent join (from connect)"),
    ("agent_join_from_token_request_s", "agent join (from token request)"),
    ("first_agent_audio_s", "first agent audio (from connect)"),
    ("first_response_latency_s", "first response latency"),
    ("response_latency_s", "response latency (all turns)"),
    ("agent_talk_s", "agent talk time"),
    ("duration_s", "simulation duration"),
)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile, q in [0, 100]; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _values(results: list[SimulationResult], key: str) -> list[float]:
    if key == "response_latency_s":
        return [v for r in results for v in r.response_latencies]
    values = [getattr(r, key) for r in results]
    return [float(v) for v in values if v is not None]


def summarize(results: list[SimulationResult]) -> dict[str, Any]:
    ok = sum(r.ok for r in results)
    timings = {}
    for key, _label in TIMINGS:
        values = _values([r for r in results if r.failed_step is None or key != "duration_s"], key)
        timings[key] = {
            "n": len(values),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "max": max(values) if values else None,
        }
    return {
        "count": len(results),
        "ok": ok,
        "failed": len(results) - ok,
        "success_rate": ok / len(results) if results else 0.0,
        "failed_steps": dict(Counter(r.failed_step for r in results if r.failed_step)),
        "causes": dict(Counter(r.cause for r in results if not r.ok and r.cause)),
        "end_reasons": dict(Counter(r.end_reason or "none" for r in results)),
        "turns": sum(len(r.turns) for r in results),
        "unanswered_turns": sum(1 for r in results for t in r.turns if not t.answered),
        "overlaps": sum(len(r.overlaps) for r in results),
        "long_silences": sum(len(r.long_silences) for r in results),
        "timings": timings,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"simulations: {summary['count']}  ok: {summary['ok']}  failed: {summary['failed']}  "
        f"success: {summary['success_rate']:.0%}",
        f"end reasons: {summary['end_reasons']}"
        + (f"  failed steps: {summary['failed_steps']}" if summary["failed_steps"] else "")
        + (f"  causes: {summary['causes']}" if summary.get("causes") else ""),
        f"turns: {summary['turns']}  unanswered: {summary['unanswered_turns']}  "
        f"overlaps: {summary['overlaps']}  long silences: {summary['long_silences']}",
        "",
        f"{'timing (s)':<36}{'n':>5}{'p50':>9}{'p95':>9}{'max':>9}",
    ]
    for key, label in TIMINGS:
        t = summary["timings"][key]
        if t["n"]:
            lines.append(
                f"{label:<36}{t['n']:>5}{_fmt(t['p50']):>9}{_fmt(t['p95']):>9}{_fmt(t['max']):>9}"
            )
    return "\n".join(lines)


def format_failures(results: list[SimulationResult], limit: int = 10) -> str:
    lines = []
    for r in [r for r in results if not r.ok][:limit]:
        lines.append(
            f"sim {r.index} (room {r.room_name}) failed at {r.failed_step}: {r.error}"
            + (f" [cause {r.cause}]" if r.cause else "")
        )
        if r.fix:
            lines.append(f"    fix: {r.fix}")
        lines.extend(f"    cause: {d}" for d in r.diagnosis)
    return "\n".join(lines)


def format_transcript(result: SimulationResult) -> str:
    return "\n".join(
        f"[{line['start']:7.2f}s] {line['who']:>6}: {line['text'] or '(inaudible)'}"
        for line in result.transcript()
    )


def write_json(
    path: Path, results: list[SimulationResult], summary: dict[str, Any], meta: dict[str, Any]
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "simulations": [r.to_json() for r in results]}
    path.write_text(json.dumps(doc, indent=2, default=str))
    return path


def write_junit(path: Path, results: list[SimulationResult], suite: str = "client-harness") -> Path:
    """One testcase per simulation; a failure carries the step, reason, fix and diagnosis."""
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(not r.ok for r in results)),
        time=f"{sum(r.duration_s or 0.0 for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(
            root,
            "testcase",
            classname=f"{suite}.{r.scenario}",
            name=f"simulation-{r.index:03d}",
            time=f"{r.duration_s or 0.0:.3f}",
        )
        if not r.ok:
            failure = ET.SubElement(
                case,
                "failure",
                message=f"[{r.failed_step}] {r.error}",
                type=r.failed_step or "failed",
            )
            failure.text = "\n".join(
                [
                    f"room: {r.room_name}",
                    f"fix: {r.fix or '-'}",
                    *[f"cause: {d}" for d in r.diagnosis],
                ]
            )
        out = ET.SubElement(case, "system-out")
        out.text = format_transcript(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
