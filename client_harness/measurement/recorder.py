"""A two-channel recording on the simulation's timeline: caller left, agent right.

Audio is placed at its timeline position rather than appended, so silences and overlaps in the
WAV are the real ones. Kept at 16 kHz mono per side: what the transcriber wants, and small enough
for 50 recordings in memory at once.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from offline_speech.audio import resample, to_float32, to_int16

RATE = 16_000
CALLER, AGENT = 0, 1


class Recorder:
    def __init__(self, rate: int = RATE) -> None:
        self.rate = rate
        self._chunks: tuple[list[tuple[int, npt.NDArray[np.int16]]], ...] = ([], [])

    def place(self, channel: int, t: float, pcm: npt.NDArray[np.int16], rate: int) -> None:
        """Put `pcm` (at `rate`) on `channel` starting `t` seconds into the timeline."""
        if pcm.size == 0:
            return
        if rate != self.rate:
            pcm = to_int16(resample(to_float32(pcm), rate, self.rate))
        self._chunks[channel].append((max(0, round(t * self.rate)), pcm))

    def channel(self, channel: int, length: int | None = None) -> npt.NDArray[np.int16]:
        chunks = self._chunks[channel]
        end = max((pos + pcm.size for pos, pcm in chunks), default=0)
        out = np.zeros(max(end, length or 0), np.int32)
        for pos, pcm in chunks:
            out[pos : pos + pcm.size] += pcm
        return np.clip(out, -32768, 32767).astype(np.int16)

    def slice(self, channel: int, start: float, end: float) -> npt.NDArray[np.int16]:
        """One channel between two timeline positions (for transcribing an utterance)."""
        a, b = max(0, round(start * self.rate)), max(0, round(end * self.rate))
        out = np.zeros(max(0, b - a), np.int32)
        for pos, pcm in self._chunks[channel]:
            lo, hi = max(a, pos), min(b, pos + pcm.size)
            if lo < hi:
                out[lo - a : hi - a] += pcm[lo - pos : hi - pos]
        return np.clip(out, -32768, 32767).astype(np.int16)

    def duration(self) -> float:
        ends = [pos + pcm.size for chunks in self._chunks for pos, pcm in chunks]
        return max(ends, default=0) / self.rate

    def write_wav(self, path: Path) -> Path:
        """Stereo 16-bit WAV, caller on the left channel, agent on the right."""
        length = round(self.duration() * self.rate)
        stereo = np.stack([self.channel(CALLER, length), self.channel(AGENT, length)], axis=1)
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(self.rate)
            wav.writeframes(stereo.astype("<i2").tobytes())
        return path
