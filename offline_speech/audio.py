"""PCM helpers: the models speak float32, LiveKit frames carry int16."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]


def to_int16(wav: Float32Array) -> Int16Array:
    """Clip and scale float audio in [-1, 1] to int16 PCM."""
    return (np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16)


def to_float32(pcm: Int16Array) -> Float32Array:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def resample(wav: Float32Array, from_rate: int, to_rate: int) -> Float32Array:
    """Linear-interpolation resampling: plenty for speech recognition on 16 kHz input."""
    if from_rate == to_rate or wav.size == 0:
        return wav.astype(np.float32, copy=False)
    n_out = round(wav.size * to_rate / from_rate)
    x_old = np.arange(wav.size, dtype=np.float64) / from_rate
    x_new = np.arange(n_out, dtype=np.float64) / to_rate
    return np.interp(x_new, x_old, wav).astype(np.float32)


def trim_silence(
    wav: Float32Array, rate: int, keep_lead_ms: int, keep_tail_ms: int, floor: float = 0.005
) -> Float32Array:
    """Cut quiet 10 ms windows (RMS below `floor`, about -46 dBFS) at both ends down to the
    given margins. hibari pads every sentence with ~0.3 s of silence before and ~0.5 s after:
    left in, that is 0.3 s of dead air before an agent answers and a 0.8 s pause between
    sentences, long enough for a VAD to end the speaker's turn."""
    win = rate // 100
    n = wav.size // win
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(np.square(wav[: n * win].reshape(n, win)), axis=1))
    loud = np.flatnonzero(rms >= floor)
    if loud.size == 0:
        return wav
    start = max(0, int(loud[0]) * win - keep_lead_ms * rate // 1000)
    end = min(wav.size, (int(loud[-1]) + 1) * win + keep_tail_ms * rate // 1000)
    return wav[start:end]
