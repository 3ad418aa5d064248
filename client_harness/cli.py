"""`client-harness run|check`: the command line over config, runner, check and report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from client_harness.check import CheckOptions, exit_code, run_check
from client_harness.config import PLATFORM_FIELDS, ConfigError, HarnessConfig, load_config
from client_harness.report import (
    format_failures,
    format_summary,
    format_transcript,
    summarize,
    write_json,
    write_junit,
)
from client_harness.runner import (
    DEFAULT_CONNECT_PARALLELISM,
    PLATFORM_MAX_CONCURRENCY,
    run_many,
)
from client_harness.scenario import ScenarioError, load_scenario
from client_harness.simulation import MODES, RunOptions

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_SCENARIO = PACKAGE_DIR / "scenarios" / "booking.yaml"
EXIT_CONFIG = 2


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or JSON file with the connection fields")
    group = parser.add_argument_group("connection fields (override the file and HARNESS_* env)")
    for name in PLATFORM_FIELDS:
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    group.add_argument("--sandbox-base-url", dest="sandbox_base_url", default=None)
    group.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        default=None,
        help="allow http:// and ws:// to non-loopback hosts",
    )
    group.add_argument("--request-timeout", type=float, default=None)
    group.add_argument("--agent-join-timeout", type=float, default=None)
    group.add_argument("--livekit-api-url", default=None, help="diagnosis only")
    group.add_argument("--livekit-api-key", default=None, help="diagnosis only")
    group.add_argument("--livekit-api-secret", default=None, help="diagnosis only")


def _config(args: argparse.Namespace) -> HarnessConfig:
    names = [
        *PLATFORM_FIELDS,
        "sandbox_base_url",
        "insecure",
        "request_timeout",
        "agent_join_timeout",
        "livekit_api_url",
        "livekit_api_key",
        "livekit_api_secret",
    ]
    return load_config(args.config, overrides={n: getattr(args, n) for n in names})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client-harness",
        description="Replay the simulation platform's LiveKit flow against a deployment.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run simulations and report")
    _add_config_flags(run)
    run.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    run.add_argument("--count", type=_at_least_one, default=1)
    run.add_argument("--concurrency", type=_at_least_one, default=1)
    run.add_argument("--mode", choices=MODES, default="voice")
    run.add_argument("--no-transcribe", action="store_true", help="voice mode without STT")
    run.add_argument("--no-recording", action="store_true")
    run.add_argument(
        "--out", type=Path, default=None, help="report directory (default runs/<time>)"
    )
    run.add_argument("--connect-timeout", type=float, default=10.0)
    run.add_argument(
        "--connect-parallelism",
        type=int,
        default=DEFAULT_CONNECT_PARALLELISM,
        help="simulations joining at the same moment (each is timed from its own start)",
    )
    run.add_argument(
        "--ramp-seconds",
        type=_not_negative,
        default=0.0,
        help="spread the starts evenly over this many seconds (default: all at once)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress line or transcript")

    sub.add_parser("demo", help="start the local stack and run one call (see demo --help)")
    check = sub.add_parser("check", help="test the connection step by step")
    _add_config_flags(check)
    check.add_argument("--audio-wait", type=float, default=15.0)
    check.add_argument("--json", action="store_true", help="print the steps as JSON too")
    return parser


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _progress(done: int, total: int, failed: int, elapsed: float) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{total} failed {failed} {elapsed:5.1f}s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def _run(args: argparse.Namespace, config: HarnessConfig) -> int:
    scenario = load_scenario(args.scenario)
    if args.concurrency > PLATFORM_MAX_CONCURRENCY:
        print(
            f"note: the platform runs at most {PLATFORM_MAX_CONCURRENCY} simulations at once",
            file=sys.stderr,
        )
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    options = RunOptions(
        mode=args.mode,
        transcribe=not args.no_transcribe,
        record_dir=None if args.no_recording or args.mode == "text" else out / "recordings",
        connect_timeout=args.connect_timeout,
    )
    run = await run_many(
        config,
        scenario,
        options,
        count=args.count,
        concurrency=args.concurrency,
        progress=None if args.quiet else _progress,
        connect_parallelism=args.connect_parallelism,
        ramp_seconds=args.ramp_seconds,
    )
    summary = summarize(run.results)
    meta: dict[str, Any] = {
        "scenario": scenario.name,
        "mode": args.mode,
        "count": args.count,
        "concurrency": args.concurrency,
        "ramp_seconds": args.ramp_seconds,
        "peak_concurrency": run.peak_concurrency,
        "wall_s": run.wall_s,
        "harness_cpu_s": run.cpu_s,
        "config": config.redacted(),
    }
    report = write_json(out / "report.json", run.results, summary, meta)
    junit = write_junit(out / "junit.xml", run.results)
    if not args.quiet and len(run.results) == 1:
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
    return 1 if run.failed else 0


async def _check(args: argparse.Namespace, config: HarnessConfig) -> int:
    def emit(step: Any) -> None:
        for line in step.lines():
            print(line, flush=True)

    steps = await run_check(config, CheckOptions(audio_wait=args.audio_wait), emit)
    code = exit_code(steps)
    print("check passed" if code == 0 else "check FAILED")
    if args.json:
        print(json.dumps([s.__dict__ for s in steps], indent=2))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        # The local stack plus one `run`; it has its own flags (client-harness demo --help).
        from client_harness import demo

        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = _config(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"[FAIL] config               {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.command == "run":
            return asyncio.run(_run(args, config))
        return asyncio.run(_check(args, config))
    except ScenarioError as exc:
        print(f"scenario: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
