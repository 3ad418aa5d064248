"""The call room's record of the caller's own connection, and what it heard of the agent."""

from __future__ import annotations

import asyncio

import pytest

from client_harness.measurement.recorder import Recorder
from tests.client_harness.measurement.tones import FRAME, frames


async def test_caller_connection_state_tracks_the_rtc_events() -> None:
    from livekit import rtc

    from client_harness.caller.call_room import CallRoom, Clock

    room = CallRoom(Clock(), Recorder(), listen_audio=False)
    assert room.caller_connection_lost() is None
    room._on_reconnecting()
    assert room.caller_connection_lost() == "reconnecting" and room.connection_lost_at is not None
    room._on_reconnected()  # a resume: the call goes on
    assert room.caller_connection_lost() is None and room.connection_lost_at is None
    room._on_reconnecting()
    room._on_disconnected(rtc.DisconnectReason.SERVER_SHUTDOWN)
    assert room.caller_connection_lost() == "SERVER_SHUTDOWN" and room.disconnected.is_set()
    room._on_reconnected()  # too late: the connection had ended
    assert room.caller_connection_lost() == "SERVER_SHUTDOWN"
    await room.close()

    # Leaving the room ourselves is not a lost connection.
    ours = CallRoom(Clock(), Recorder(), listen_audio=False)
    await ours.close()
    ours._on_disconnected(rtc.DisconnectReason.CLIENT_INITIATED)
    assert ours.caller_connection_lost() is None and ours.disconnected.is_set()


async def test_next_utterance_is_the_first_to_start_after_a_time_once_it_has_ended() -> None:
    from client_harness.caller.call_room import CallRoom, Clock

    room = CallRoom(Clock(), Recorder(), listen_audio=False)
    heard = frames("." * 5 + "s" * 20 + "." * 50 + "s" * 20)  # one utterance ended, one going on
    for i, pcm in enumerate(heard):
        room.vad.push(i * FRAME, FRAME, pcm)
    first = await room.next_utterance(after=0.0, within=0.1)
    assert first is not None and first.start == pytest.approx(0.1)
    # the second has started but not ended: not yet, and None once `within` has passed
    assert await room.next_utterance(after=first.start, within=0.2) is None

    async def agent_falls_silent() -> None:
        for i, pcm in enumerate(frames("." * 50), start=len(heard)):
            room.vad.push(i * FRAME, FRAME, pcm)
        await room.notify()

    waiting = asyncio.create_task(room.next_utterance(after=first.start, within=5.0))
    await asyncio.sleep(0.05)
    await agent_falls_silent()
    second = await waiting
    assert second is not None and second.start == pytest.approx(0.1 + 0.4 + 1.0)
    await room.close()
