"""The caller's voice and ears: offline TTS for its turns, offline STT for the agent's replies.

A scenario says the same few lines in every simulation, so each distinct turn is synthesised once,
before the clock matters, in a short-lived child process: the TTS model (~150 MB resident) is
never loaded into the harness, which keeps only the PCM. The STT model is loaded once per
process on first use and shared by every simulation.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import numpy.typing as npt

from offline_speech import Synthesizer, Transcriber, Voice
from offline_speech.audio import trim_silence
from offline_speech.tts import SAMPLE_RATE

CALLER_EDGE_MS = 30  # silence kept before and after a caller turn


def synthesize_turns(texts: list[str]) -> list[npt.NDArray[np.int16]]:
    """The caller voice saying each text, its edges cut to CALLER_EDGE_MS. The synthesiser
    leaves a pause after each sentence; a turn's own edges are cut, so the caller's end of speech
    (which response latency is timed from) is when its voice stops, not when silence ends."""
    synth = Synthesizer(Voice.caller())
    return [
        trim_silence(synth.synthesize(text), synth.sample_rate, CALLER_EDGE_MS, CALLER_EDGE_MS)
        for text in texts
    ]


class Speech:
    """The process's caller turns (as PCM) and its transcriber, shared by every simulation."""

    def __init__(self, transcribe: bool = True) -> None:
        self.transcribe_enabled = transcribe
        self._lock = threading.Lock()
        self._synth_lock = threading.Lock()  # one child at a time, each text synthesised once
        self._stt: Transcriber | None = None
        self._cache: dict[str, npt.NDArray[np.int16]] = {}
        self.sample_rate = SAMPLE_RATE

    def _transcriber(self) -> Transcriber:
        with self._lock:
            if self._stt is None:
                self._stt = Transcriber()
        return self._stt

    def warm_up(self, texts: list[str]) -> None:
        """Synthesise the scenario's turns and load the transcriber before the clock matters."""
        self._synthesize(texts)
        if self.transcribe_enabled:
            self._transcriber()

    def _synthesize(self, texts: list[str]) -> None:
        with self._synth_lock:
            missing = [text for text in dict.fromkeys(texts) if text not in self._cache]
            if not missing:
                return
            # spawn, not fork: the parent may already run the native LiveKit runtime's threads
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
                pcms = child.submit(synthesize_turns, missing).result()
            self._cache.update(zip(missing, pcms, strict=True))

    async def synthesize(self, text: str) -> npt.NDArray[np.int16]:
        if text not in self._cache:
            await asyncio.to_thread(self._synthesize, [text])
        return self._cache[text]

    async def transcribe(self, pcm: npt.NDArray[np.int16], rate: int) -> str:
        if not self.transcribe_enabled or pcm.size == 0:
            return ""
        stt = self._transcriber()
        return await asyncio.to_thread(stt.transcribe, pcm, rate)
