"""`sample-agent start|dev` (or `python -m sample_agent ...`): run the worker.

`start` is production mode (JSON logs, drains calls in progress on SIGTERM); `dev` is the
framework's development mode (colored debug logs, exits without draining). Both
register with the LiveKit server named by LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET.

The framework on its own logs "worker failed" and exits 0 when those are missing or the server
cannot be reached; this wrapper checks them first and exits non-zero, naming what is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_CONFIG = 2
EXIT_CONNECTION = 1


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
        p.add_argument("--log-level", default=None, help="TRACE, DEBUG, INFO, WARN, ERROR")
        p.add_argument(
            "--log-format",
            choices=["json", "colored"],
            default=None,
            help="default: json for start, colored for dev",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.environ.get("AGENT_LOAD_DOTENV", "1") != "0":
        from dotenv import load_dotenv

        load_dotenv(override=False)  # a local .env fills gaps; real env vars win

    from sample_agent.config import SettingsError, load_settings, missing_livekit_vars

    missing = missing_livekit_vars()
    if missing:
        print(
            "sample-agent: missing required environment variable(s): "
            + ", ".join(missing)
            + "\n  LIVEKIT_URL is the server's ws:// or wss:// URL; LIVEKIT_API_KEY and "
            "LIVEKIT_API_SECRET are a key pair the server accepts.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"sample-agent: {e}", file=sys.stderr)
        return EXIT_CONFIG

    # The framework preloads its own local VAD and end-of-turn weights (~240 MB) into the
    # forkserver unless told not to; this agent uses neither (silero plugin, VAD turn handling).
    os.environ.setdefault("LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE", "0")

    from livekit.agents.cli import cli as lk_cli
    from livekit.agents.cli import proto

    from sample_agent.agent import build_server

    server = build_server(settings)
    dev = args.command == "dev"
    # `python -m livekit.agents start [--dev]` runs exactly this function; calling it directly
    # lets us build the server from settings instead of importing a module-level global.
    lk_cli._run_worker(
        server,
        proto.CliArgs(
            log_level=args.log_level or ("DEBUG" if dev else "INFO"),
            log_format=args.log_format or ("colored" if dev else "json"),
            dev=dev,
        ),
    )
    if server._connection_failed:  # the framework gave up reconnecting and exited quietly
        print(f"sample-agent: could not connect to {os.environ['LIVEKIT_URL']}", file=sys.stderr)
        return EXIT_CONNECTION
    return 0


if __name__ == "__main__":
    sys.exit(main())
