"""Where the agent's utterances start and end, from the audio it sends.

An energy detector, not silero: the harness listens to synthetic speech delivered over loopback,
where silence is digital near-silence and speech sits ~30 dB above it, so a level threshold with
hysteresis finds the edges to within 10 ms: frames of any length are judged in 10 ms windows, so
the harness can take its audio in large frames (fewer hand-overs from the native side) and still
time an utterance's start to 10 ms. It costs a few microseconds per frame, needs no
model (the harness extra stays free of onnxruntime/torch), and 50 simulations in one process can
run it alongside their audio streams on two cores. For a noisy real deployment, raise
`threshold_dbfs`. The end-of-utterance silence defaults to 0.8 s: 0.5 s splits a TTS speaker
between sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from offline_speech.audio import window_dbfs

WINDOW_SECONDS = 0.01


@dataclass(frozen=True)
class VadSettings:
    threshold_dbfs: float = -45.0
    min_speech_seconds: float = 0.06  # voiced time needed to call it speech (ignores clicks)
    end_silence_seconds: float = 0.8  # silence that ends an utterance


@dataclass
class Utterance:
    start: float
    end: float  # end of the last voiced frame

    @property
    def duration(self) -> float:
        return self.end - self.start


class EnergyVad:
    """Feed consecutive frames with their timeline position; read back finished utterances.

    `push` returns the edges the frame crossed, in order: "start" when speech begins (backdated
    to its first voiced window), "end" when an utterance is complete. `speaking` is True between
    the two.
    """

    def __init__(self, settings: VadSettings | None = None) -> None:
        self.settings = settings or VadSettings()
        self.speaking = False
        self._candidate_start: float | None = None
        self._voiced_run = 0.0
        self._current: Utterance | None = None
        self.utterances: list[Utterance] = []

    @property
    def current(self) -> Utterance | None:
        """The utterance in progress, if any."""
        return self._current

    def push(self, t: float, duration: float, pcm: npt.NDArray[np.int16]) -> list[str]:
        windows = max(1, min(round(duration / WINDOW_SECONDS), pcm.size))
        step = duration / windows
        levels = window_dbfs(pcm, windows)
        edges = []
        for i, level in enumerate(levels.tolist()):
            edge = self._window(t + i * step, step, level >= self.settings.threshold_dbfs)
            if edge is not None:
                edges.append(edge)
        return edges

    def _window(self, t: float, duration: float, voiced: bool) -> str | None:
        end_of_frame = t + duration
        if not self.speaking:
            if not voiced:
                self._candidate_start, self._voiced_run = None, 0.0
                return None
            if self._candidate_start is None:
                self._candidate_start = t
            self._voiced_run += duration
            if self._voiced_run + 1e-9 >= self.settings.min_speech_seconds:
                self.speaking = True
                self._current = Utterance(self._candidate_start, end_of_frame)
                self._candidate_start, self._voiced_run = None, 0.0
                return "start"
            return None
        assert self._current is not None
        if voiced:
            self._current.end = end_of_frame
            return None
        if end_of_frame - self._current.end + 1e-9 >= self.settings.end_silence_seconds:
            return self._finish()
        return None

    def flush(self) -> Utterance | None:
        """Close an utterance still open at the end of the stream."""
        if self.speaking:
            self._finish()
            return self.utterances[-1]
        return None

    def _finish(self) -> str:
        assert self._current is not None
        self.utterances.append(self._current)
        self._current = None
        self.speaking = False
        return "end"
