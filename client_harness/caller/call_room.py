"""The caller in the room (steps 5–6 mechanics): join, wait for the agent, listen, speak, chat.

One `CallRoom` per simulation, on the simulation's clock. It owns the `livekit.rtc.Room` and
everything attached to it; `close()` leaves the room. The conversation logic
lives in `conversation.py`; this module only turns room events into timeline facts:
- the agent = the first remote participant (the platform waits for on_first_participant_joined),
- the agent's speech as VAD utterances (voice) and its `lk.transcription` segments (text mode),
- the caller's own speech, published as a microphone track at real-time pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc

from client_harness.measurement.recorder import AGENT, CALLER, Recorder
from client_harness.measurement.stream_clock import StreamClock
from client_harness.measurement.vad import EnergyVad, Utterance, VadSettings

log = logging.getLogger("client_harness.caller.call_room")

LISTEN_RATE = 16_000
# Audio crosses the FFI in 100 ms frames each way: every frame is a native call or event and an
# event-loop wakeup, and 20 ms frames cost the harness ~5x as many. The VAD still times edges
# to 10 ms (it judges 10 ms windows) and the stream clock places frames by their samples.
FRAME_MS = 100
CALLER_FRAME_MS = 100
AGENT_STATE_ATTR = "lk.agent.state"
AGENT_NAME_ATTR = "lk.agent.name"
TRANSCRIPTION_TOPIC = "lk.transcription"
TRANSCRIBED_TRACK_ATTR = "lk.transcribed_track_id"
CHAT_TOPIC = "lk.chat"
_SILENT_PEAK = 10  # frames peaking at or below this (-70 dBFS) are not stored in the recording


class Clock:
    """Seconds since the simulation started (the token request)."""

    def __init__(self) -> None:
        self.zero = time.monotonic()
        self.zero_unix = time.time()  # the same instant on the wall clock, for lining up logs

    def now(self) -> float:
        return time.monotonic() - self.zero


@dataclass
class TextSegment:
    sender: str
    start: float
    end: float | None = None
    text: str = ""
    # The audio track the text transcribes (`lk.transcribed_track_id`): the sender's own track
    # for its speech, the caller's for the sender's transcript of the caller; "" when not given.
    track_id: str = ""


def kind_name(kind: int) -> str:
    try:
        name = rtc.ParticipantKind.Name(kind)  # type: ignore[arg-type]
        return name.removeprefix("PARTICIPANT_KIND_").lower()
    except ValueError:
        return str(kind)


def _chunk_text(chunk: str) -> str:
    """Transcription chunks are plain text, or JSON TimedString lines when the agent opts in."""
    stripped = chunk.strip()
    if stripped.startswith("{"):
        parts = []
        for line in stripped.splitlines():
            try:
                parts.append(str(json.loads(line).get("text", "")))
            except (ValueError, AttributeError):
                return chunk
        return "".join(parts)
    return chunk


async def send_pcm(source: rtc.AudioSource, pcm: np.ndarray, rate: int, frame_ms: int) -> None:
    """Play mono int16 `pcm` into `source` in `frame_ms` frames (the last one padded with
    silence) and return once it has all played out: the source paces it in real time."""
    step = rate * frame_ms // 1000
    for i in range(0, pcm.size, step):
        chunk = pcm[i : i + step]
        if chunk.size < step:
            chunk = np.concatenate([chunk, np.zeros(step - chunk.size, np.int16)])
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), rate, 1, step))
    await source.wait_for_playout()


class CallRoom:
    def __init__(
        self,
        clock: Clock,
        recorder: Recorder,
        *,
        listen_audio: bool = True,
        vad: VadSettings | None = None,
    ) -> None:
        self.clock = clock
        self.recorder = recorder
        self.listen_audio = listen_audio
        self.room = rtc.Room()
        self.vad = EnergyVad(vad)
        self.agent: rtc.RemoteParticipant | None = None
        self.agent_joined_at: float | None = None
        self.connected_at: float | None = None
        self.agent_left = asyncio.Event()
        self.disconnected = asyncio.Event()  # the caller's own connection ended for good
        # The caller's own connection to LiveKit: when it was lost (the SDK started reconnecting
        # or gave up) while we had not asked to leave, and the rtc DisconnectReason if it ended.
        self.connection_lost = asyncio.Event()
        self.connection_lost_at: float | None = None
        self.disconnect_reason: str | None = None
        self._closing = False
        # Participants that are not agents (kind standard, egress, SIP, ...), as they joined
        # before the agent: the platform's on_first_participant_joined would fire on the first.
        self.non_agents: list[tuple[rtc.RemoteParticipant, float]] = []
        self.text_segments: list[TextSegment] = []
        self.first_audio_at: float | None = None
        self.on_utterance_end: Callable[[Utterance], None] | None = None
        self._changed = asyncio.Condition()
        self._agent_seen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._source: rtc.AudioSource | None = None
        self._source_rate = 0
        self._streams: list[rtc.AudioStream] = []
        self.room.on("participant_connected", self._on_participant_connected)
        self.room.on("participant_disconnected", self._on_participant_disconnected)
        self.room.on("track_subscribed", self._on_track_subscribed)
        self.room.on("participant_attributes_changed", self._on_attributes_changed)
        self.room.on("disconnected", self._on_disconnected)
        self.room.on("reconnecting", self._on_reconnecting)
        self.room.on("reconnected", self._on_reconnected)
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_text_stream)

    # ---- connection --------------------------------------------------------------------------

    async def connect(self, url: str, token: str, within: float) -> None:
        """Join over WebSocket + WebRTC; raises rtc.ConnectError."""
        # Always subscribe, even in text mode where the audio is not decoded here: livekit-agents
        # holds its speech (and the transcript synced to it) until its track has a subscriber.
        options = rtc.RoomOptions(auto_subscribe=True, connect_timeout=within)
        # No asyncio timeout around connect(): cancelling it after the native side has connected
        # leaves the FFI waiting for a ready signal that never comes, and it aborts the process.
        # `within` bounds each signalling attempt instead (the SDK makes up to three).
        await self.room.connect(url, token, options)
        self.connected_at = self.clock.now()
        for participant in self.room.remote_participants.values():
            self._on_participant_connected(participant)

    @property
    def identity(self) -> str:
        return self.room.local_participant.identity

    async def wait_for_agent(self, within: float) -> rtc.RemoteParticipant:
        """The first remote participant of kind AGENT; raises TimeoutError."""
        async with asyncio.timeout(within):
            await self._agent_seen.wait()
        assert self.agent is not None
        return self.agent

    def agent_state(self) -> str | None:
        return self.agent.attributes.get(AGENT_STATE_ATTR) if self.agent else None

    def agent_busy(self) -> bool:
        """The agent says it is thinking or speaking (only agents built on livekit-agents do)."""
        return self.agent_state() in ("thinking", "speaking")

    def caller_connection_lost(self) -> str | None:
        """Why the caller's own connection to LiveKit is down right now (the rtc disconnect
        reason, or "reconnecting"), or None while it is up. Leaving the room ourselves does
        not count."""
        if self.disconnect_reason is not None:
            return self.disconnect_reason
        if self.connection_lost.is_set():
            return "reconnecting"
        return None

    async def close(self) -> None:
        """Leave the room first, so the native side ends every stream itself, then reap."""
        self._closing = True
        with contextlib.suppress(Exception):
            await self.room.disconnect()
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.aclose()
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.aclose()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- waiting -----------------------------------------------------------------------------

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _notify_soon(self) -> None:
        self._spawn(self.notify())

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """True once `predicate()` holds, False after `within` s or when the agent leaves."""
        deadline = time.monotonic() + within
        async with self._changed:
            while not predicate():
                if self.agent_left.is_set() or self.disconnected.is_set():
                    return predicate()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Wake at least every 100 ms so time-based predicates are re-evaluated.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 0.1)):
                        await self._changed.wait()
        return True

    async def next_utterance(self, after: float, within: float) -> Utterance | None:
        """The agent's first utterance (by the VAD) that starts after `after`, once it has
        ended; None if there is none after `within` s or when the agent left first."""

        def found() -> Utterance | None:
            return next((u for u in self.vad.utterances if u.start > after), None)

        await self.wait_until(lambda: found() is not None, within)
        return found()

    # ---- speaking ----------------------------------------------------------------------------

    async def publish_microphone(self, sample_rate: int) -> None:
        self._source = rtc.AudioSource(sample_rate, 1, queue_size_ms=200)
        self._source_rate = sample_rate
        track = rtc.LocalAudioTrack.create_audio_track("simulated-caller", self._source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)

    async def speak(self, pcm: np.ndarray) -> tuple[float, float]:
        """Send `pcm` at real-time pace; returns (start, end) of the caller's speech."""
        assert self._source is not None, "publish_microphone first"
        start = self.clock.now()
        await send_pcm(self._source, pcm, self._source_rate, CALLER_FRAME_MS)
        end = max(self.clock.now(), start + pcm.size / self._source_rate)
        self.recorder.place(CALLER, start, pcm, self._source_rate)
        return start, end

    async def send_chat(self, text: str) -> float:
        """Send one chat message; returns when sending began, where its reply is looked for
        from: under load `send_text` returns late, and a reply that arrives meanwhile is the
        answer to this message, not to an earlier one."""
        start = self.clock.now()
        await self.room.local_participant.send_text(text, topic=CHAT_TOPIC)
        return start

    # ---- events ------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        """The first participant of kind AGENT is the agent; others are noted, not taken for it
        (an egress, a SIP leg or a person in the room is not the customer's agent)."""
        if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            if self.agent is None:
                self.non_agents.append((participant, self.clock.now()))
        elif self.agent is None:
            self.agent = participant
            self.agent_joined_at = self.clock.now()
            self._agent_seen.set()
            for publication in participant.track_publications.values():
                if publication.track is not None and isinstance(
                    publication.track, rtc.RemoteAudioTrack
                ):
                    self._listen(publication.track)
        self._notify_soon()

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if self.agent is not None and participant.identity == self.agent.identity:
            self.agent_left.set()
            self._notify_soon()

    def _on_disconnected(self, reason: object = None, *_: object) -> None:
        if not self._closing:
            try:
                self.disconnect_reason = rtc.DisconnectReason.Name(reason)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                self.disconnect_reason = str(reason)
            self._lost()
        self.disconnected.set()
        self._notify_soon()

    def _on_reconnecting(self, *_: object) -> None:
        if not self._closing:
            self._lost()
            self._notify_soon()

    def _on_reconnected(self, *_: object) -> None:
        # The SDK got the connection back (a resume or a full reconnect): the call goes on.
        if self.disconnect_reason is None:
            self.connection_lost.clear()
            self.connection_lost_at = None
        self._notify_soon()

    def _lost(self) -> None:
        if self.connection_lost_at is None:
            self.connection_lost_at = self.clock.now()
        self.connection_lost.set()

    def _on_attributes_changed(self, _changed: object, participant: rtc.Participant) -> None:
        if self.agent is not None and participant.identity == self.agent.identity:
            self._notify_soon()

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        _publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if (
            self.agent is not None
            and participant.identity == self.agent.identity
            and isinstance(track, rtc.RemoteAudioTrack)
        ):
            self._listen(track)

    def _listen(self, track: rtc.RemoteAudioTrack) -> None:
        if self._streams or not self.listen_audio:  # one agent audio track is enough
            return
        stream = rtc.AudioStream(
            track, sample_rate=LISTEN_RATE, num_channels=1, frame_size_ms=FRAME_MS
        )
        self._streams.append(stream)
        self._spawn(self._read_audio(stream))

    async def _read_audio(self, stream: rtc.AudioStream) -> None:
        clock = StreamClock(LISTEN_RATE, self.clock.now)
        async for event in stream:
            frame = event.frame
            pcm = np.frombuffer(frame.data, dtype=np.int16)
            duration = frame.samples_per_channel / frame.sample_rate
            t = clock.place(frame.samples_per_channel)
            if self.vad.speaking or (pcm.size and np.abs(pcm).max() > _SILENT_PEAK):
                self.recorder.place(AGENT, t, pcm, frame.sample_rate)
            edges = self.vad.push(t, duration, pcm)
            for edge in edges:
                if edge == "start" and self.first_audio_at is None and self.vad.current is not None:
                    self.first_audio_at = self.vad.current.start
                if edge == "end" and self.on_utterance_end is not None:
                    self.on_utterance_end(self.vad.utterances[-1])
            if edges:
                await self.notify()

    def _on_text_stream(self, reader: rtc.TextStreamReader, participant_identity: str) -> None:
        # Kept whoever sent it: under load a text stream can arrive before the event announcing
        # its sender (data channel and signalling are separate paths), so an agent's greeting
        # may come from a participant not yet seen. Only the caller's own echo is dropped here;
        # `agent_text_segments` picks the agent's.
        if participant_identity == self.room.local_participant.identity:
            self._spawn(self._drain(reader))
            return
        attributes = reader.info.attributes or {}
        segment = TextSegment(
            sender=participant_identity,
            start=self.clock.now(),
            track_id=attributes.get(TRANSCRIBED_TRACK_ATTR, ""),
        )
        self.text_segments.append(segment)
        self._spawn(self._read_text(reader, segment))

    def agent_text_segments(self) -> list[TextSegment]:
        """The transcription segments the agent sent (none until the agent has joined)."""
        if self.agent is None:
            return []
        return [seg for seg in self.text_segments if seg.sender == self.agent.identity]

    async def _drain(self, reader: rtc.TextStreamReader) -> None:
        with contextlib.suppress(Exception):
            await reader.read_all()

    async def _read_text(self, reader: rtc.TextStreamReader, segment: TextSegment) -> None:
        try:
            async for chunk in reader:
                segment.text += _chunk_text(chunk)
                await self.notify()
        except Exception as exc:  # an aborted stream still tells us the agent spoke
            log.debug("transcription stream ended abnormally: %s", exc)
        segment.end = self.clock.now()
        segment.text = " ".join(segment.text.split())
        await self.notify()
