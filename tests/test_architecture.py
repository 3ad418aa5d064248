"""The layout's rules hold: no import cycle, no import against the flow (import-linter).

The contracts live in pyproject.toml ([tool.importlinter]); ARCHITECTURE.md draws them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from local_stack import REPO_ROOT

PACKAGES = ("kit_settings", "token_server", "sample_agent", "client_harness", "offline_speech")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # `root`'s packages, not the installed ones
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    done = lint_imports(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def copy_of_the_tree(tmp_path: Path) -> Path:
    for name in (*PACKAGES, "local_stack"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    module.write_text(module.read_text() + f"\n{statement}  # planted by the test\n")


def test_an_import_against_the_flow_breaks_a_contract(tmp_path: Path) -> None:
    root = copy_of_the_tree(tmp_path)
    # the measurement layer reaching up into the caller flow
    add_import(
        root / "client_harness/measurement/metrics.py", "import client_harness.caller.runner"
    )
    done = lint_imports(root)
    assert done.returncode != 0
    assert "client_harness.measurement.metrics -> client_harness.caller.runner" in done.stdout


def test_an_import_cycle_breaks_a_contract(tmp_path: Path) -> None:
    root = copy_of_the_tree(tmp_path)
    # offline_speech.audio <-> offline_speech.tts: a cycle inside one package
    add_import(root / "offline_speech/audio.py", "import offline_speech.tts")
    done = lint_imports(root)
    assert done.returncode != 0
    assert "No import cycle anywhere in the kit BROKEN" in " ".join(done.stdout.split())
