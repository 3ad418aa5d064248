"""The caller's VAD: where the agent's utterances start and end."""

from __future__ import annotations

import pytest

from client_harness.measurement.vad import EnergyVad, VadSettings
from tests.client_harness.measurement.tones import FRAME, frames


def run_vad(
    pattern: str, settings: VadSettings | None = None
) -> tuple[EnergyVad, list[tuple[float, str]]]:
    vad = EnergyVad(settings)
    edges = []
    for i, pcm in enumerate(frames(pattern)):
        edge = vad.push(i * FRAME, FRAME, pcm)
        if edge:
            edges.append((round(i * FRAME, 2), edge))
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


def test_vad_flush_closes_an_open_utterance() -> None:
    vad, _ = run_vad("." * 5 + "s" * 10)
    assert vad.speaking and vad.flush() is not None and not vad.speaking
