"""`make demo` = `client-harness demo`: the whole flow on this machine with one command.

Starts livekit-server, the token endpoint and the sample agent on free loopback ports, runs one
spoken simulation exactly as `client-harness run` does, and stops everything it started — on
success, on a failed step, on Ctrl-C and on SIGTERM. `--nodes N --workers M --replicas K` starts
LiveKit's cluster instead: N livekit-server nodes on one redis-server, M agent workers spread over
them, K token-server replicas; the one call goes through the first replica.
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
from local_stack import (
    AgentWorker,
    Cluster,
    ClusterPart,
    LiveKitServer,
    LocalStack,
    RedisServer,
    StackError,
    TokenServer,
)

AGENT_NAME = "sample-agent"
AGENT_METADATA = '{"persona": "Sofia", "business": "Bella Vista"}'
CUSTOM_PAYLOAD = '{"agent_variant": "booking", "language": "en"}'


def _say(text: str) -> None:
    print(text, flush=True)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_call(args: argparse.Namespace, cluster: Cluster, out: Path) -> int:
    """One simulation through `client-harness run`'s own function: one code path for both.
    It goes through the first token-server replica (and that replica's node)."""
    token_server = cluster.token_servers[0]
    config = stack_config(
        token_server,
        cluster.node_for(token_server),
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
    for flag, what in (
        ("--nodes", "livekit-server nodes (more than 1: on one redis-server)"),
        ("--workers", "sample-agent workers, worker i registered with node i %% nodes"),
        ("--replicas", "token-server replicas, replica j dispatching through node j %% nodes"),
    ):
        parser.add_argument(flag, type=_positive, default=1, help=f"{what} (default: 1)")
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("s" if n != 1 else "")


def _announce(part: ClusterPart) -> None:
    """Each process as it comes up: where it answers, and where its log is."""
    match part:
        case RedisServer():
            _say(f"  redis-server    pid {part.process.pid}  {part.url}")
        case LiveKitServer():
            _say(f"  livekit-server  pid {part.process.pid}  {part.url}")
            # generated for this run only: what LIVEKIT_API_KEY / _SECRET must be to reach it
            _say(f"                  key pair  {part.api_key} / {part.api_secret}")
        case TokenServer():
            via = f"  (dispatching through {part.livekit_url})"
            _say(f"  token endpoint  pid {part.process.pid}  POST {part.endpoint}{via}")
        case AgentWorker():
            where = f"  registered as {part.agent_name!r} with {part.livekit_url}"
            _say(f"  sample agent    pid {part.process.pid}{where}")
    _say(f"                  log       {part.process.log_path}")


def _start(stack: LocalStack, args: argparse.Namespace, key: str) -> Cluster:
    if args.nodes == args.workers == args.replicas == 1:
        parts = "livekit-server (dev mode, loopback), the token endpoint and the sample agent"
    else:
        parts = (
            f"{_count(args.nodes, 'livekit-server node')}, "
            f"{_count(args.replicas, 'token endpoint')} and {_count(args.workers, 'sample agent')}"
        )
    _say(f"demo: starting {parts} (loading the offline speech models) ...")
    return stack.start_cluster(
        AGENT_NAME,
        nodes=args.nodes,
        workers=args.workers,
        replicas=args.replicas,
        token_env={
            "AGENT_METADATA": AGENT_METADATA,
            "TOKEN_SERVER_API_KEYS": key,
            "TOKEN_SERVER_ALLOW_NO_AUTH": "0",
        },
        started=_announce,
    )


def _stay_up(cluster: Cluster, key: str, log_dir: Path) -> int:
    """Keep the stack up for manual tries until Ctrl-C (or one of its processes exits: 1)."""
    token_server = cluster.token_servers[0]
    others = len(cluster.token_servers) - 1
    _say(f"\nlogs of each process: {log_dir}")
    _say(
        "demo: the stack is up — press Ctrl-C to stop it.\n"
        f"  curl -s -X POST {token_server.endpoint} -H 'Authorization: Bearer {key}' "
        '-d \'{"room_name": "my-room", "participant_name": "simulated_user"}\'\n'
        f"  client-harness check --generate-token-endpoint {token_server.endpoint} "
        f"--livekit-url {token_server.public_url} "
        f'--generate-token-headers \'{{"Authorization": "Bearer {key}"}}\''
        + (f"\n  (the {others} other token endpoint(s) take the same key)" if others else "")
    )
    while all(c.alive() for c in cluster.processes()):
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
        cluster = _start(stack, args, key)
        code = 0
        if not args.no_call:
            spoken = "spoken" if (args.mode or "voice") == "voice" else "in text"
            _say(f"demo: running one simulated call (the platform's side, {spoken}) ...\n")
            in_call = True
            code = _run_call(args, cluster, out)
            in_call = False
            if not stay_up:
                _say(f"\nlogs of each process: {stack.log_dir}")
        if stay_up:
            code = _stay_up(cluster, key, stack.log_dir)
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
