"""The synthesiser's sentence edges: an utterance starts with its voice, not with silence (that
silence is the agent's response latency), while later sentences keep their pause."""

from __future__ import annotations

import math

import numpy as np

from offline_speech import Synthesizer
from offline_speech.audio import Int16Array, window_dbfs
from offline_speech.tts import SAMPLE_RATE

# trim_silence's default floor (RMS 0.005 of full scale), in dBFS: quieter windows are silence
_FLOOR_DBFS = 20 * math.log10(0.005)


def quiet_lead_ms(pcm: Int16Array) -> int:
    """Leading 10 ms windows below the floor, in ms."""
    levels = window_dbfs(pcm, pcm.size // (SAMPLE_RATE // 100))
    return int(np.flatnonzero(levels >= _FLOOR_DBFS)[0]) * 10


def test_the_first_sentence_starts_at_once_and_later_ones_keep_their_pause() -> None:
    chunks = list(Synthesizer().stream("Thanks for calling. How can I help you today?"))
    assert len(chunks) == 2
    first, second = quiet_lead_ms(chunks[0]), quiet_lead_ms(chunks[1])
    assert first <= 10, first
    assert 50 <= second <= 60, second
