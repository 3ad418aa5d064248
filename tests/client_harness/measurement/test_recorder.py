"""The stereo recording: audio placed on the call's timeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client_harness.measurement.recorder import AGENT, CALLER, Recorder
from tests.client_harness.measurement.tones import RATE


def test_recorder_places_audio_on_the_timeline(tmp_path: Path) -> None:
    rec = Recorder()
    one = np.full(RATE // 10, 1000, np.int16)
    rec.place(CALLER, 0.5, one, RATE)
    rec.place(AGENT, 1.0, np.full(2400, 2000, np.int16), 24_000)  # resampled to 16 kHz
    assert rec.duration() == pytest.approx(1.1)
    assert rec.slice(CALLER, 0.5, 0.6).min() == 1000 and rec.slice(CALLER, 0.0, 0.5).max() == 0
    import wave

    with wave.open(str(rec.write_wav(tmp_path / "x.wav"))) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, RATE)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).reshape(-1, 2)
    assert stereo[int(0.55 * RATE), 0] == 1000 and stereo[int(0.55 * RATE), 1] == 0
    assert stereo[int(1.05 * RATE), 1] > 1500
