"""The synthesiser's sentence edges: an utterance starts with its voice, not with silence (that
silence is the agent's response latency), while later sentences keep their pause."""

from __future__ import annotations

import numpy as np

from offline_speech import Synthesizer
from offline_speech.audio import Int16Array
from offline_speech.tts import SAMPLE_RATE

_FLOOR = 0.005  # trim_silence's default: windows quieter than this count as silence


def quiet_lead_ms(pcm: Int16Array) -> int:
    """Leading 10 ms windows below the floor, in ms."""
    win = SAMPLE_RATE // 100
    windows = pcm[: pcm.size // win * win].astype(np.float32).reshape(-1, win) / 32768
    loud = np.flatnonzero(np.sqrt(np.mean(np.square(windows), axis=1)) >= _FLOOR)
    return int(loud[0]) * 10


def test_the_first_sentence_starts_at_once_and_later_ones_keep_their_pause() -> None:
    chunks = list(Synthesizer().stream("Thanks for calling. How can I help you today?"))
    assert len(chunks) == 2
    first, second = quiet_lead_ms(chunks[0]), quiet_lead_ms(chunks[1])
    assert first <= 10, first
    assert 50 <= second <= 60, second
