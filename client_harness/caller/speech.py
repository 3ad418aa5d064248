"""The caller's voice and ears: offline TTS for its turns, offline STT for the agent's replies.

Loaded once per process on first use and shared by every simulation; each distinct turn is
synthesised once.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import numpy.typing as npt

from offline_speech import Synthesizer, Transcriber, Voice
from offline_speech.audio import trim_silence

CALLER_EDGE_MS = 30  # silence kept before and after a caller turn


class Speech:
    """The process's offline speech models, loaded once on first use and shared by every
    simulation; caller turns are synthesised once per distinct text."""

    def __init__(self, transcribe: bool = True) -> None:
        self.transcribe_enabled = transcribe
        self._lock = threading.Lock()
        self._synth: Synthesizer | None = None
        self._stt: Transcriber | None = None
        self._cache: dict[str, npt.NDArray[np.int16]] = {}
        self.sample_rate = 24_000

    def _synthesizer(self) -> Synthesizer:
        with self._lock:
            if self._synth is None:
                self._synth = Synthesizer(Voice.caller())
        return self._synth

    def _transcriber(self) -> Transcriber:
        with self._lock:
            if self._stt is None:
                self._stt = Transcriber()
        return self._stt

    def warm_up(self, texts: list[str]) -> None:
        """Load models and synthesise the scenario's turns before the clock matters."""
        for text in texts:
            self._synthesize(text)
        if self.transcribe_enabled:
            self._transcriber()

    def _synthesize(self, text: str) -> npt.NDArray[np.int16]:
        pcm = self._cache.get(text)
        if pcm is None:
            synth = self._synthesizer()
            # The synthesiser leaves a pause after each sentence; the turn's own edges are cut
            # to CALLER_EDGE_MS, so the caller's end of speech (which response latency is timed
            # from) is when its voice stops, not when trailing silence ends.
            pcm = trim_silence(
                synth.synthesize(text), synth.sample_rate, CALLER_EDGE_MS, CALLER_EDGE_MS
            )
            self.sample_rate = synth.sample_rate
            self._cache[text] = pcm
        return pcm

    async def synthesize(self, text: str) -> npt.NDArray[np.int16]:
        if text in self._cache:
            return self._cache[text]
        return await asyncio.to_thread(self._synthesize, text)

    async def transcribe(self, pcm: npt.NDArray[np.int16], rate: int) -> str:
        if not self.transcribe_enabled or pcm.size == 0:
            return ""
        stt = self._transcriber()
        return await asyncio.to_thread(stt.transcribe, pcm, rate)
