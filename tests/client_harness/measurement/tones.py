"""Synthetic audio for the measurement tests: tone and silence in 20 ms frames."""

from __future__ import annotations

import numpy as np

RATE = 16_000


FRAME = 0.02


def frames(pattern: str) -> list[np.ndarray]:
    """'s' = a 20 ms frame of loud tone, '.' = a silent frame."""
    n = int(RATE * FRAME)
    tone = (8000 * np.sin(np.arange(n) * 2 * np.pi * 220 / RATE)).astype(np.int16)
    return [tone if c == "s" else np.zeros(n, np.int16) for c in pattern]
