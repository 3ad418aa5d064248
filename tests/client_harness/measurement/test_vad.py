"""The caller's VAD: where the agent's utterances start and end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from client_harness.measurement.vad import EnergyVad, VadSettings
from offline_speech.audio import to_float32, window_dbfs
from tests.client_harness.measurement.tones import FRAME, frames


def run_vad(
    pattern: str, settings: VadSettings | None = None
) -> tuple[EnergyVad, list[tuple[float, str]]]:
    vad = EnergyVad(settings)
    edges = []
    for i, pcm in enumerate(frames(pattern)):
        edges += [(round(i * FRAME, 2), edge) for edge in vad.push(i * FRAME, FRAME, pcm)]
    return vad, edges


def test_vad_finds_start_and_end() -> None:
    vad, edges = run_vad("." * 10 + "s" * 50 + "." * 50)
    assert [e for _, e in edges] == ["start", "end"]
    (utterance,) = vad.utterances
    assert utterance.start == pytest.approx(0.2) and utterance.end == pytest.approx(1.2)


def test_vad_keeps_a_short_pause_inside_one_utterance() -> None:
    vad, _ = run_vad("s" * 20 + "." * 25 + "s" * 20 + "." * 50)  # 0.5 s pause < 0.8 s
    assert len(vad.utterances) == 1


def test_vad_splits_on_a_long_pause_and_ignores_clicks() -> None:
    vad, _ = run_vad("s" * 20 + "." * 50 + "s" + "." * 10 + "s" * 20 + "." * 50)
    assert len(vad.utterances) == 2


def test_vad_times_edges_to_10_ms_inside_large_frames() -> None:
    """The harness reads 100 ms frames; an utterance starting 30 ms into one is timed there."""
    pattern = "." * 6 + "s" * 40 + "." * 60 + "s" * 9  # 20 ms frames, regrouped by five below
    pcm = np.concatenate(frames(pattern))
    big = 5 * round(16_000 * FRAME)
    vad, edges = EnergyVad(), []
    for i in range(0, pcm.size, big):
        edges.append(vad.push(i / 16_000, 0.1, pcm[i : i + big]))
    assert edges[1] == ["start"]  # in the second frame, not at its start
    assert vad.utterances[0].start == pytest.approx(0.12)
    assert vad.utterances[0].end == pytest.approx(0.92)
    assert ["end"] in edges and vad.speaking  # the second utterance (0.1 s of tone) has begun
    assert vad.current is not None and vad.current.start == pytest.approx(2.12)


def test_vad_flush_closes_an_open_utterance() -> None:
    vad, _ = run_vad("." * 5 + "s" * 10)
    assert vad.speaking and vad.flush() is not None and not vad.speaking


def test_the_vad_level_is_dbfs_whichever_format_the_audio_is_in() -> None:
    tone = frames("s")[0]  # a sine peaking at 8000 of 32768 (-12.2 dB): about 3 dB less as RMS
    (level,) = window_dbfs(tone, 1)
    assert level == pytest.approx(20 * math.log10(8000 / 32768) - 3.01, abs=0.2)
    assert window_dbfs(to_float32(tone), 1)[0] == pytest.approx(level, abs=1e-3)
    assert window_dbfs(np.zeros(320, np.int16), 1)[0] == -math.inf
    assert window_dbfs(np.zeros(0, np.int16), 1)[0] == -math.inf
    # two windows: the tone's half and a silent half, each measured on its own
    halves = window_dbfs(np.concatenate([tone, np.zeros(tone.size, np.int16)]), 2)
    assert halves[0] == pytest.approx(level) and halves[1] == -math.inf
