"""PCM helpers: the models speak float32, LiveKit frames carry int16."""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
Pcm = TypeVar("Pcm", Int16Array, Float32Array)

_INT16_FULL_SCALE = 32768.0


def to_int16(wav: Float32Array) -> Int16Array:
    """Clip and scale float audio in [-1, 1] to int16 PCM."""
    return (np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16)


def to_float32(pcm: Int16Array) -> Float32Array:
    return (pcm.astype(np.float32) / _INT16_FULL_SCALE).astype(np.float32)


def resample(wav: Float32Array, from_rate: int, to_rate: int) -> Float32Array:
    """Linear-interpolation resampling: plenty for speech recognition on 16 kHz input."""
    if from_rate == to_rate or wav.size == 0:
        return wav.astype(np.float32, copy=False)
    n_out = round(wav.size * to_rate / from_rate)
    x_old = np.arange(wav.size, dtype=np.float64) / from_rate
    x_new = np.arange(n_out, dtype=np.float64) / to_rate
    return np.interp(x_new, x_old, wav).astype(np.float32)


def _full_scale(audio: Int16Array | Float32Array) -> npt.NDArray[np.float64]:
    """The samples as float64 with full scale at 1.0, whichever of the two formats they are in."""
    scaled = audio.astype(np.float64)
    if np.issubdtype(audio.dtype, np.integer):
        scaled /= _INT16_FULL_SCALE
    return scaled


def window_dbfs(audio: Int16Array | Float32Array, windows: int) -> npt.NDArray[np.float64]:
    """RMS level in dBFS of each of `windows` equal slices of the audio (a remainder too short
    for a slice is left out); -inf for digital silence."""
    size = audio.size // windows
    if size == 0:
        return np.full(windows, -math.inf)
    scaled = _full_scale(audio[: windows * size]).reshape(windows, size)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.mean(np.square(scaled), axis=1))


def trim_silence(
    audio: Pcm, rate: int, keep_lead_ms: int, keep_tail_ms: int, floor: float = 0.005
) -> Pcm:
    """Cut quiet 10 ms windows (RMS below `floor` of full scale; 0.005 is about -46 dBFS) at
    both ends down to the given margins; int16 PCM or float audio, returned in its own format.
    hibari pads every sentence with ~0.3 s of silence before and ~0.5 s after: left in, that is
    0.3 s of dead air before an agent answers and a 0.8 s pause between sentences, long enough
    for a VAD to end the speaker's turn."""
    win = rate // 100
    n = audio.size // win
    if n == 0:
        return audio
    windows = _full_scale(audio[: n * win]).reshape(n, win)
    loud = np.flatnonzero(np.sqrt(np.mean(np.square(windows), axis=1)) >= floor)
    if loud.size == 0:
        return audio
    start = max(0, int(loud[0]) * win - keep_lead_ms * rate // 1000)
    end = min(audio.size, (int(loud[-1]) + 1) * win + keep_tail_ms * rate // 1000)
    return audio[start:end]
