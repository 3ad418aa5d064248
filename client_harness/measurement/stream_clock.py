"""Where each frame of a received audio stream sits on the simulation's timeline.

A frame's arrival time is a poor timestamp: under load the event loop hands frames over late and
in bursts. The stream itself is a better clock (its samples come at a steady rate), so a frame is
placed at the stream's start plus the samples before it. The start is estimated from arrivals,
which can only run late, never early: the earliest `arrival - samples before` seen so far is the
best estimate, and it improves as the stream goes on. A lag at the first frames (a burst of
simulations joining) would otherwise shift every timestamp of that call. A stream that arrives
more than `REANCHOR_SECONDS` behind its own clock has really paused (a reconnect, a lost
subscription): it is placed from that arrival on.
"""

from __future__ import annotations

from collections.abc import Callable

REANCHOR_SECONDS = 0.25


class StreamClock:
    def __init__(self, sample_rate: int, now: Callable[[], float]) -> None:
        self.sample_rate = sample_rate
        self._now = now
        self._start: float | None = None
        self._samples = 0

    def place(self, samples: int) -> float:
        """Timeline position of the start of the frame of `samples` that has just arrived."""
        arrival = self._now()
        before = self._samples / self.sample_rate
        implied_start = arrival - before - samples / self.sample_rate
        if self._start is None or implied_start - self._start > REANCHOR_SECONDS:
            self._start, self._samples, before = implied_start + before, 0, 0.0
        else:
            self._start = min(self._start, implied_start)
        self._samples += samples
        return self._start + before
