"""The caller's speech: turns synthesised once, in a child process, never in the harness's own."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from client_harness.caller.speech import synthesize_turns

PROBE = """
import sys
from client_harness.caller.speech import Speech
speech = Speech(transcribe=False)
speech.warm_up(["Hello there.", "Goodbye.", "Hello there."])
assert "hibari" not in sys.modules, "the TTS model was loaded into the harness process"
sys.stdout.buffer.write(speech._cache["Hello there."].tobytes())
"""


def test_turns_are_synthesised_in_a_child_and_match_the_synthesiser() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    from_child = np.frombuffer(done.stdout, np.int16)
    (direct,) = synthesize_turns(["Hello there."])
    assert from_child.size > 10_000  # about a second of speech at 24 kHz
    assert np.array_equal(from_child, direct)
