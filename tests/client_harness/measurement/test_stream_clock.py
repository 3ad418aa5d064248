"""The stream clock: frames placed by their samples, not by when the event loop saw them."""

from __future__ import annotations

import pytest

from client_harness.measurement.stream_clock import REANCHOR_SECONDS, StreamClock

RATE = 16_000
FRAME = 1_600  # 100 ms


def place_all(arrivals: list[float]) -> list[float]:
    now = iter(arrivals)
    clock = StreamClock(RATE, lambda: next(now))
    return [clock.place(FRAME) for _ in arrivals]


def test_a_late_first_frame_does_not_shift_the_frames_after_it() -> None:
    # The first frame is handed over 80 ms late, the rest on time (each as its 100 ms end).
    placed = place_all([0.18, 0.2, 0.3, 0.4, 0.5])
    assert placed[0] == pytest.approx(0.08)  # the best it knew then
    assert placed[1:] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_a_burst_of_late_frames_keeps_their_spacing() -> None:
    placed = place_all([0.1, 0.2, 0.5, 0.5, 0.5, 0.6])  # three frames at once
    assert placed == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


def test_a_real_pause_restarts_the_clock_at_the_next_arrival() -> None:
    gap = REANCHOR_SECONDS + 0.5
    placed = place_all([0.1, 0.2, 0.3 + gap, 0.4 + gap])
    assert placed == pytest.approx([0.0, 0.1, 0.2 + gap, 0.3 + gap])
