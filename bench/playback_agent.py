"""A stand-in agent for the spoken-caller benchmark: cheap, deterministic, and its own witness.

To find how many spoken simulations one harness process carries, the far side must not be the
limit: the sample agent costs ~0.2 core per call (Whisper + TTS), so a core of it saturates at ~4
calls. This agent joins every room on the server as a participant of kind AGENT, says a greeting,
and answers each caller utterance with a pre-synthesised reply a fixed delay after its own energy
VAD declared the utterance over. It records, per turn, the latency it produced by its own clock
(caller speech end as received → first reply frame sent), so the harness's figure can be checked
against it turn by turn.

Not a livekit-agents worker on purpose: rooms are found by polling ListRooms, so no dispatch,
no job process and no model per call stand between the harness and what is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
from livekit import api, rtc

from client_harness.caller.call_room import send_pcm
from client_harness.measurement.stream_clock import StreamClock
from client_harness.measurement.vad import EnergyVad
from offline_speech import Synthesizer, Voice

IDENTITY = "playback-agent"
LISTEN_RATE = 16_000
FRAME_MS = 100  # as the harness: 100 ms frames keep this side of the pinned stack light
POLL_SECONDS = 0.2
GREETING = "Hello, thanks for calling the restaurant. How can I help you?"
# One reply per caller turn of the booking scenario, worded to meet its expectations.
REPLIES = (
    "Sure, your table for four on Friday at seven is booked.",
    "Yes, the menu has several vegetarian options.",
    "Thank you for calling. Goodbye.",
)


@dataclass
class TurnTruth:
    room: str
    turn: int  # 1-based, as in the harness report
    latency_s: float  # caller speech end (stream clock) → first reply frame sent
    heard_end_unix: float  # the caller's speech end as this agent heard it, wall clock
    reply_unix: float  # first reply frame sent, wall clock


@dataclass
class Playback:
    """Serves every room that appears on one livekit-server until stopped."""

    url: str
    api_url: str
    api_key: str
    api_secret: str
    delay_s: float = 0.2
    truths: list[TurnTruth] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        synth = Synthesizer(Voice.agent())
        self.rate = synth.sample_rate
        self.greeting = synth.synthesize(GREETING)
        self.replies = [synth.synthesize(text) for text in REPLIES]
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, stop: asyncio.Event) -> None:
        async with api.LiveKitAPI(self.api_url, self.api_key, self.api_secret) as lk:
            while not stop.is_set():
                rooms = await lk.room.list_rooms(api.ListRoomsRequest())
                for room in rooms.rooms:
                    if room.name not in self._seen and room.num_participants > 0:
                        self._seen.add(room.name)
                        task = asyncio.create_task(self._call(room.name))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    def _token(self, room: str) -> str:
        grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True)
        return (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(IDENTITY)
            .with_kind("agent")
            .with_grants(grants)
            .to_jwt()
        )

    async def _call(self, name: str) -> None:
        room = rtc.Room()
        caller_track: asyncio.Future[rtc.RemoteAudioTrack] = asyncio.Future()
        caller_left = asyncio.Event()

        def subscribed(track: rtc.Track, *_: object) -> None:
            if isinstance(track, rtc.RemoteAudioTrack) and not caller_track.done():
                caller_track.set_result(track)

        room.on("track_subscribed", subscribed)
        room.on("participant_disconnected", lambda *_: caller_left.set())
        room.on("disconnected", lambda *_: caller_left.set())
        source = rtc.AudioSource(self.rate, 1, queue_size_ms=200)
        try:
            await room.connect(self.url, self._token(name))
            track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            await room.local_participant.publish_track(track, options)
            heard = await asyncio.wait_for(caller_track, 30)
            await send_pcm(source, self.greeting, self.rate, FRAME_MS)
            listening = asyncio.create_task(self._listen(name, heard, source))
            await caller_left.wait()
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
        except Exception as exc:  # a failed room is reported, the others go on
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                await room.disconnect()
            with contextlib.suppress(Exception):
                await source.aclose()

    async def _listen(
        self, name: str, track: rtc.RemoteAudioTrack, source: rtc.AudioSource
    ) -> None:
        """Energy VAD on the caller on a stream clock (as the harness times the agent), and a
        reply `delay_s` after each utterance ends."""
        stream = rtc.AudioStream(
            track, sample_rate=LISTEN_RATE, num_channels=1, frame_size_ms=FRAME_MS
        )
        vad = EnergyVad()
        clock = StreamClock(LISTEN_RATE, time.monotonic)
        replies: list[asyncio.Task[None]] = []
        try:
            async for event in stream:
                frame = event.frame
                duration = frame.samples_per_channel / frame.sample_rate
                t = clock.place(frame.samples_per_channel)
                pcm = np.frombuffer(frame.data, dtype=np.int16)
                if "end" in vad.push(t, duration, pcm) and len(vad.utterances) <= len(self.replies):
                    turn = len(vad.utterances)
                    replies.append(
                        asyncio.create_task(self._reply(name, turn, vad.utterances[-1].end, source))
                    )
        finally:
            await stream.aclose()
            for task in replies:
                task.cancel()

    async def _reply(
        self, name: str, turn: int, speech_end: float, source: rtc.AudioSource
    ) -> None:
        await asyncio.sleep(self.delay_s)
        started = time.monotonic()
        to_unix = time.time() - started
        self.truths.append(
            TurnTruth(name, turn, started - speech_end, speech_end + to_unix, started + to_unix)
        )
        await send_pcm(source, self.replies[turn - 1], self.rate, FRAME_MS)
