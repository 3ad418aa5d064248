"""Schemathesis against the live token endpoint: a real livekit-server and the real token server
(api dispatch, an API key, no agent worker), every check Schemathesis has, from the document the
server itself serves at /openapi.json.

It must find no server error, no answer outside the document (status, content type, body,
headers), no request the document calls valid refused and none it calls invalid accepted, and no
route that ignores its API key. Settings are in tests/e2e/schemathesis.toml (one accepted-by-design
case filtered, 413 counted as a refusal, both explained there); the seed is fixed, so CI sends the
same cases every run (change SEED locally to explore further).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from local_stack import REPO_ROOT, LocalStack

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = REPO_ROOT / "tests" / "e2e" / "schemathesis.toml"
API_KEY = "schemathesis-key"
AGENT = "voice-assistant"  # the document's examples ask for this agent: they get 200
MAX_EXAMPLES = 100  # per operation; the whole run takes ~10 s on 2 cores
SEED = 20240611
RUN_TIMEOUT = 100.0
LONG_LINE = 400  # failing cases' curl lines can be 200 kB: cut in the assertion message


def readable(output: str) -> str:
    return "\n".join(
        line if len(line) <= LONG_LINE else line[:LONG_LINE] + " …[cut]"
        for line in output.splitlines()
    )


def test_schemathesis_finds_nothing_against_the_live_endpoint(tmp_path: Path) -> None:
    with LocalStack(log_dir=tmp_path / "logs") as stack:
        livekit = stack.start_livekit()
        server = stack.start_token_server(
            livekit,
            env={
                "DISPATCH_MODE": "api",
                "AGENT_NAME": AGENT,
                "TOKEN_SERVER_API_KEYS": API_KEY,
                "TOKEN_SERVER_ALLOW_NO_AUTH": "0",
                # no worker takes the jobs: each followed dispatch gives up after a second
                "DISPATCH_RETRY_DEADLINE_SECONDS": "1",
            },
        )
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # the hooks module, from this tree
        env.pop("SCHEMATHESIS_HOOKS", None)
        done = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(CONFIG),
                "--no-color",
                "run",
                f"{server.base_url}/openapi.json",
                "--checks",
                "all",
                "--header",
                f"Authorization: Bearer {API_KEY}",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "2",
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            cwd=tmp_path,  # where it keeps its crash cache
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        output = readable(done.stdout + done.stderr)
        print(output[output.find("SUMMARY") :])  # pytest -s: what was run
        assert done.returncode == 0, f"schemathesis exited {done.returncode}:\n{output}"
        assert "No issues found" in output, output

        # it ran for real: every operation, a few hundred cases, each phase that applies
        tested = re.search(r"Tested:\s+(\d+)", output)
        generated = re.search(r"(\d+) generated, (\d+) passed", output)
        assert tested and int(tested.group(1)) == 4, output  # /openapi.json itself is not tested
        assert generated and int(generated.group(1)) >= 200, output
        assert generated.group(1) == generated.group(2), output
        for phase in ("Examples", "Coverage", "Fuzzing"):
            assert re.search(rf"✅ {phase}\b", output), output

        # and the endpoint is still there
        assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
