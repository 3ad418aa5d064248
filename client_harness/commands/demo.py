"""`make demo` = `client-harness demo`: the whole flow on this machine with one command.

Starts livekit-server, the token endpoint and the sample agent on free loopback ports, runs one
spoken simulation exactly as `client-harness run` does, and stops everything it started — on
success, on a failed step, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import time
from pathlib import Path
from types import FrameType

from client_harness.caller.simulation import RunOptions
from client_harness.commands.run import RunPlan, default_out, run_and_report
from client_harness.config import stack_config
from client_harness.scenario import DEFAULT_SCENARIO, ScenarioError, load_scenario
from local_stack import AgentWorker, LiveKitServer, LocalStack, StackError, TokenServer

AGENT_NAME = "sample-agent"
AGENT_METADATA = '{"persona": "Sofia", "business": "Bella Vista"}'
CUSTOM_PAYLOAD = '{"agent_variant": "booking", "language": "en"}'


def _say(text: str) -> None:
    print(text, flush=True)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_call(
    args: argparse.Namespace, token_server: TokenServer, livekit: LiveKitServer, out: Path
) -> int:
    """One simulation through `client-harness run`'s own function: one code path for both."""
    config = stack_config(
        token_server,
        livekit,
        livekit_agent_name=AGENT_NAME,
        livekit_agent_metadata=AGENT_METADATA,
        token_request_payload=CUSTOM_PAYLOAD,
    )
    scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
    mode = args.mode or "voice"
    options = RunOptions(mode=mode, record_dir=None if mode == "text" else out / "recordings")
    return asyncio.run(run_and_report(config, scenario, options, RunPlan(out=out)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client-harness demo",
        description="Run the kit's whole flow locally: LiveKit, token endpoint, agent, one call.",
    )
    parser.add_argument("--scenario", type=Path, help="scenario YAML (default: booking)")
    parser.add_argument("--mode", choices=["voice", "text"], help="default: voice")
    parser.add_argument("--out", type=Path, help="where reports go (default runs/demo-<time>)")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the call, keep the stack up for manual tries until Ctrl-C",
    )
    parser.add_argument(
        "--no-call",
        action="store_true",
        help="start the stack and wait for Ctrl-C without running a call",
    )
    return parser


def _start(stack: LocalStack, key: str) -> tuple[LiveKitServer, TokenServer, AgentWorker]:
    _say("demo: starting livekit-server (dev mode, loopback) ...")
    livekit = stack.start_livekit()
    _say(f"  livekit-server  pid {livekit.process.pid}  {livekit.url}")
    token_server = stack.start_token_server(
        livekit,
        env={
            "AGENT_NAME": AGENT_NAME,
            "AGENT_METADATA": AGENT_METADATA,
            "TOKEN_SERVER_API_KEYS": key,
            "TOKEN_SERVER_ALLOW_NO_AUTH": "0",
        },
    )
    _say(f"  token endpoint  pid {token_server.process.pid}  POST {token_server.endpoint}")
    _say("demo: starting the sample agent (loads the offline speech models) ...")
    agent = stack.start_agent(livekit, AGENT_NAME)
    _say(f"  sample agent    pid {agent.process.pid}  registered as {AGENT_NAME!r}")
    return livekit, token_server, agent


def _stay_up(
    livekit: LiveKitServer, token_server: TokenServer, agent: AgentWorker, key: str
) -> int:
    """Keep the stack up for manual tries until Ctrl-C (or one of its processes exits: 1)."""
    _say(
        "\ndemo: the stack is up — press Ctrl-C to stop it.\n"
        f"  curl -s -X POST {token_server.endpoint} -H 'Authorization: Bearer {key}' "
        '-d \'{"room_name": "my-room", "participant_name": "simulated_user"}\'\n'
        f"  client-harness check --generate-token-endpoint {token_server.endpoint} "
        f"--livekit-url {livekit.url} "
        f'--generate-token-headers \'{{"Authorization": "Bearer {key}"}}\''
    )
    while all(c.alive() for c in (livekit.process, token_server.process, agent.process)):
        time.sleep(0.5)
    _say("demo: a process of the stack exited; stopping the rest")
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = args.out or default_out("demo-")
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    key = secrets.token_urlsafe(16)
    code = 1
    in_call = False
    stay_up = args.keep_running or args.no_call
    # the demo runs the kit as the user's shell configures it (e.g. AGENT_PROVIDER=openai)
    stack = LocalStack(log_dir=out / "logs", inherit_kit_settings=True)
    try:
        livekit, token_server, agent = _start(stack, key)
        code = 0
        if not args.no_call:
            _say("demo: running one simulated call (the platform's side, spoken) ...\n")
            in_call = True
            code = _run_call(args, token_server, livekit, out)
            in_call = False
            _say(f"\nlogs of each process: {stack.log_dir}")
        if stay_up:
            code = _stay_up(livekit, token_server, agent, key)
    except StackError as exc:
        _say(f"demo: FAILED to start the stack: {exc}")
        code = 1
    except ScenarioError as exc:
        _say(f"demo: scenario: {exc}")
        code = 2
    except KeyboardInterrupt:
        _say("\ndemo: interrupted")
        if in_call or not stay_up:
            code = 130  # stopped before the demo finished
        # else: Ctrl-C is how a kept-running stack ends; the call's result stands
    finally:
        stack.close()
        _say("demo: stopped every process it started")
    return code
