"""`sample-agent start|dev` (or `python -m sample_agent ...`): run the worker.

`start` is production mode (JSON logs, drains calls in progress on SIGTERM); `dev` is the
framework's development mode (colored debug logs, exits without draining). Both register with
the LiveKit server named by LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET.

The worker runs through livekit-agents' public entry point, `livekit.agents.cli.run_app`, given
a server built from the settings. On its own the framework logs "worker failed" and exits 0 when
those variables are missing or the server cannot be reached; this wrapper checks the settings
first (exit 2, every problem named) and exits 1 naming the URL when the worker failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kit_settings import parse_flag

if TYPE_CHECKING:  # the framework is imported only once the settings are known to be good
    from livekit.agents import AgentServer

EXIT_CONFIG = 2
EXIT_CONNECTION = 1
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sample-agent",
        description="The sample LiveKit voice agent (offline speech by default).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("start", "production mode: JSON logs, drains calls in progress on SIGTERM"),
        ("dev", "development mode: colored debug logs, stops without draining calls"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--log-level",
            type=str.upper,
            choices=LOG_LEVELS,
            default=None,
            help="default: INFO for start, DEBUG for dev",
        )
    return parser


def _environment() -> Mapping[str, str]:
    """The process environment, gaps filled from a local .env (real variables win).

    The file is read, not loaded into os.environ: the settings are read from this mapping once
    and passed down, and the framework gets the LiveKit URL and key pair as arguments."""
    if parse_flag(os.environ.get("AGENT_LOAD_DOTENV", "1")) is False:
        return os.environ
    from dotenv import dotenv_values

    from_file = {name: value for name, value in dotenv_values().items() if value is not None}
    return {**from_file, **os.environ}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sample_agent.config import SettingsError, load_settings

    try:
        settings = load_settings(_environment(), require_livekit=True)
    except SettingsError as exc:
        print("sample-agent: cannot start, the settings have problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG

    # The framework preloads its own local VAD and end-of-turn weights (~240 MB) into the
    # forkserver unless this variable says not to; this agent uses neither (silero plugin, VAD
    # turn handling). livekit-agents 1.8.9 has no argument for it: the one os.environ write here.
    os.environ.setdefault("LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE", "0")

    from sample_agent.agent import build_server

    server = build_server(settings)
    cli_args = [args.command]
    if args.command == "dev":
        cli_args.append("--no-reload")  # the framework's reload is gone; it would only warn
    if args.log_level:
        cli_args += ["--log-level", args.log_level]
    code = _run_app(server, cli_args)
    if server.failure is not None:
        # run() raised: the framework gave up connecting (AGENT_CONNECT_RETRIES attempts), or
        # could not start at all; it logged "worker failed" and would have exited 0
        print(
            f"sample-agent: the worker stopped: {server.failure} "
            f"(LiveKit server {settings.livekit_url})",
            file=sys.stderr,
        )
        return EXIT_CONNECTION
    return code


def _run_app(server: AgentServer, cli_args: list[str]) -> int:
    """`livekit.agents.cli.run_app(server)` on `cli_args`; its exit code.

    run_app is the framework's public entry point that takes a server object (the newer
    `python -m livekit.agents start <file>` imports a module-level server instead, which could
    not be built from settings checked first, nor tell us it failed). It reads its command line
    from sys.argv, exits through SystemExit, and warns that it is deprecated: that one warning
    is silenced, the framework's own log lines are not. Connection failures are not in its exit
    code (always 0): `SampleAgentServer.failure` carries them. LIVEKIT_URL / _API_KEY / _SECRET
    in the environment also reach it as its options' defaults: the same values as the settings.
    """
    from livekit.agents import cli

    saved_argv = sys.argv
    sys.argv = ["sample-agent", *cli_args]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="the built-in Python CLI is deprecated", category=Warning
            )
            cli.run_app(server)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    sys.exit(main())
