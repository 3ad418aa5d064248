"""`client-harness run`: many simulations against one deployment, then the report files.

The demo runs its one call through `run_and_report` too, so a user sees the same output from both.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client_harness.caller.runner import (
    DEFAULT_CONNECT_PARALLELISM,
    PLATFORM_MAX_CONCURRENCY,
    RunResult,
    run_many,
)
from client_harness.caller.simulation import RunOptions
from client_harness.config import HarnessConfig
from client_harness.report import (
    format_failures,
    format_summary,
    format_transcript,
    summarize,
    write_json,
    write_junit,
)
from client_harness.scenario import Scenario


@dataclass(frozen=True)
class RunPlan:
    """How many simulations, how fast, and where their reports go."""

    out: Path
    count: int = 1
    concurrency: int = 1
    connect_parallelism: int = DEFAULT_CONNECT_PARALLELISM
    ramp_seconds: float = 0.0
    quiet: bool = False  # no progress line, no transcript


def default_out(prefix: str = "") -> Path:
    """runs/<prefix><time>: one folder per run, never overwritten by the next."""
    return Path("runs") / time.strftime(f"{prefix}%Y%m%d-%H%M%S")


def _progress(done: int, total: int, failed: int, elapsed: float) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{total} failed {failed} {elapsed:5.1f}s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def run_and_report(
    config: HarnessConfig, scenario: Scenario, options: RunOptions, plan: RunPlan
) -> int:
    """Run the plan, print the summary and failures, write report.json and junit.xml; 0 when
    every simulation passed."""
    if plan.concurrency > PLATFORM_MAX_CONCURRENCY:
        print(
            f"note: the platform runs at most {PLATFORM_MAX_CONCURRENCY} simulations at once",
            file=sys.stderr,
        )
    run = await run_many(
        config,
        scenario,
        options,
        count=plan.count,
        concurrency=plan.concurrency,
        progress=None if plan.quiet else _progress,
        connect_parallelism=plan.connect_parallelism,
        ramp_seconds=plan.ramp_seconds,
    )
    _print_and_write(config, scenario, options, plan, run)
    return 1 if run.failed else 0


def _print_and_write(
    config: HarnessConfig, scenario: Scenario, options: RunOptions, plan: RunPlan, run: RunResult
) -> None:
    summary = summarize(run.results)
    meta: dict[str, Any] = {
        "scenario": scenario.name,
        "mode": options.mode,
        "count": plan.count,
        "concurrency": plan.concurrency,
        "ramp_seconds": plan.ramp_seconds,
        "peak_concurrency": run.peak_concurrency,
        "wall_s": run.wall_s,
        "harness_cpu_s": run.cpu_s,
        "config": config.redacted(),
    }
    report = write_json(plan.out / "report.json", run.results, summary, meta)
    junit = write_junit(plan.out / "junit.xml", run.results)
    if not plan.quiet and len(run.results) == 1:
        print(format_transcript(run.results[0]) + "\n")
    print(format_summary(summary))
    failures = format_failures(run.results)
    if failures:
        print("\n" + failures)
    recordings = [r.recording for r in run.results if r.recording]
    print(f"\nreport: {report}\njunit:  {junit}")
    if recordings:
        print(
            f"recordings: {Path(recordings[0]).parent} ({len(recordings)} stereo WAVs, "
            "caller left / agent right)"
        )
