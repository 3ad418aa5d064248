"""`client-harness run|check|demo`: the command line; each command lives in its own module."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from client_harness.caller.runner import DEFAULT_CONNECT_PARALLELISM
from client_harness.caller.simulation import MODES, RunOptions
from client_harness.commands import demo
from client_harness.commands.check import CheckOptions, exit_code, run_check
from client_harness.commands.run import RunPlan, default_out, run_and_report
from client_harness.config import PLATFORM_FIELDS, ConfigError, HarnessConfig, load_config
from client_harness.scenario import DEFAULT_SCENARIO, ScenarioError, load_scenario

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


async def _run(args: argparse.Namespace, config: HarnessConfig) -> int:
    out = args.out or default_out()
    options = RunOptions(
        mode=args.mode,
        transcribe=not args.no_transcribe,
        record_dir=None if args.no_recording or args.mode == "text" else out / "recordings",
        connect_timeout=args.connect_timeout,
    )
    plan = RunPlan(
        out=out,
        count=args.count,
        concurrency=args.concurrency,
        connect_parallelism=args.connect_parallelism,
        ramp_seconds=args.ramp_seconds,
        quiet=args.quiet,
    )
    return await run_and_report(config, load_scenario(args.scenario), options, plan)


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
