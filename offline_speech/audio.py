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
