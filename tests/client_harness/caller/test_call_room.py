"""The call room's record of the caller's own connection."""

from __future__ import annotations

from client_harness.measurement.recorder import Recorder


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
