"""A scripted caller for the sample agent's end-to-end test and latency benchmark.

A real `livekit.rtc` participant: it joins with a token, publishes a microphone track fed at
real-time pace (silence between utterances, as a phone line would), subscribes to the agent's
audio and cuts it into utterances by energy, and collects the agent's `lk.transcription` text
streams. Times are `time.monotonic()` seconds in this process: the end of the caller's speech is
when its last speech sample leaves the audio source's queue, the start of the agent's answer is
when the first loud frame of the agent's track arrives.

The general client harness (`client_harness/`) replays the platform's whole side; this is the
small fixed instrument the agent's own tests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import rtc

LISTEN_RATE = 16_000
MIC_RATE = 24_000
FRAME_MS = 10
LOUD_DBFS = -40.0  # a frame louder than this is agent speech
QUIET_DBFS = -50.0  # trailing samples quieter than this are not part of the caller's speech
TRANSCRIPTION_TOPIC = "lk.transcription"


def dbfs(pcm: np.ndarray) -> float:
    if pcm.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    return 20.0 * np.log10(max(rms, 1e-9) / 32768.0)


def trim_silence(pcm: np.ndarray, sample_rate: int, keep_ms: int = 30) -> np.ndarray:
    """Drop quiet samples at both ends (10 ms windows), so "end of speech" is the last word."""
    win = sample_rate // 100
    n = pcm.size // win
    if n == 0:
        return pcm
    loud = [i for i in range(n) if dbfs(pcm[i * win : (i + 1) * win]) > QUIET_DBFS]
    if not loud:
        return pcm[:0]
    keep = keep_ms * sample_rate // 1000
    return pcm[max(0, loud[0] * win - keep) : min(pcm.size, (loud[-1] + 1) * win + keep)]


@dataclass
class AgentUtterance:
    started_at: float
    ended_at: float | None = None
    chunks: list[np.ndarray] = field(default_factory=list)

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@dataclass
class Transcript:
    received_at: float
    participant: str
    track_id: str
    text: str


class AgentCaller:
    """Use inside a running event loop; `async with` leaves the room at the end."""

    def __init__(self, *, silence_gap: float = 1.2) -> None:
        self.room = rtc.Room()
        self.silence_gap = silence_gap
        self.utterances: list[AgentUtterance] = []
        self.transcripts: list[Transcript] = []
        self.agent: rtc.RemoteParticipant | None = None
        self.agent_audio_track_sid: str | None = None
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._source = rtc.AudioSource(MIC_RATE, 1, queue_size_ms=50)
        self._outgoing: deque[np.ndarray] = deque()
        self._speech_done: asyncio.Future[float] | None = None
        self._agent_left = asyncio.Event()
        self.room.on("participant_connected", self._on_participant)
        self.room.on("participant_disconnected", self._on_participant_left)
        self.room.on("track_subscribed", self._on_track)
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_text)

    async def __aenter__(self) -> AgentCaller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()

    # -- joining ---------------------------------------------------------------------------

    async def connect(self, url: str, token: str) -> None:
        await self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
        for p in self.room.remote_participants.values():
            self._on_participant(p)
        track = rtc.LocalAudioTrack.create_audio_track("caller-mic", self._source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self._spawn(self._pump_microphone())

    async def wait_for_agent(self, within: float) -> rtc.RemoteParticipant:
        await self.wait_for(lambda: self.agent is not None, within, "the agent to join")
        assert self.agent is not None
        return self.agent

    async def wait_agent_left(self, within: float) -> None:
        await asyncio.wait_for(self._agent_left.wait(), within)

    async def leave(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.room.disconnect()
        with contextlib.suppress(Exception):
            await self._source.aclose()

    # -- speaking --------------------------------------------------------------------------

    async def say(self, pcm: np.ndarray, sample_rate: int = MIC_RATE) -> float:
        """Publish one utterance at real-time pace; returns when its last sample went out."""
        if sample_rate != MIC_RATE:
            raise ValueError(f"caller audio must be {MIC_RATE} Hz")
        pcm = trim_silence(pcm, sample_rate)
        step = MIC_RATE * FRAME_MS // 1000
        loop = asyncio.get_running_loop()
        self._speech_done = loop.create_future()
        for i in range(0, pcm.size, step):
            chunk = pcm[i : i + step]
            self._outgoing.append(np.pad(chunk, (0, step - chunk.size)))
        return await self._speech_done

    async def _pump_microphone(self) -> None:
        """Feed the track continuously: queued speech, else silence (the VAD needs both)."""
        step = MIC_RATE * FRAME_MS // 1000
        silence = np.zeros(step, np.int16)
        while True:
            chunk = self._outgoing.popleft() if self._outgoing else silence
            frame = rtc.AudioFrame(chunk.tobytes(), MIC_RATE, 1, step)
            await self._source.capture_frame(frame)
            if not self._outgoing and self._speech_done and not self._speech_done.done():
                # the last speech frame is queued; it plays out after what is queued before it
                self._speech_done.set_result(time.monotonic() + self._source.queued_duration)

    # -- listening -------------------------------------------------------------------------

    def _on_participant(self, p: rtc.RemoteParticipant) -> None:
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and self.agent is None:
            self.agent = p
            self._notify()

    def _on_participant_left(self, p: rtc.RemoteParticipant) -> None:
        if self.agent is not None and p.identity == self.agent.identity:
            self._agent_left.set()

    def _on_track(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and participant.kind == (
            rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        ):
            self.agent_audio_track_sid = publication.sid
            self._spawn(self._listen(track))

    async def _listen(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=LISTEN_RATE, num_channels=1)
        current: AgentUtterance | None = None
        last_loud = 0.0
        try:
            async for ev in stream:
                now = time.monotonic()
                pcm = np.frombuffer(ev.frame.data, dtype=np.int16).copy()
                loud = dbfs(pcm) > LOUD_DBFS
                if current is None:
                    if loud:
                        current = AgentUtterance(started_at=now, chunks=[pcm])
                        self.utterances.append(current)
                        last_loud = now
                        self._notify()
                    continue
                current.chunks.append(pcm)
                if loud:
                    last_loud = now
                elif now - last_loud > self.silence_gap:
                    current.ended_at = last_loud
                    current = None
                    self._notify()
        finally:
            await stream.aclose()

    def _on_text(self, reader: rtc.TextStreamReader, participant_identity: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            attrs = reader.info.attributes or {}
            self.transcripts.append(
                Transcript(
                    received_at=time.monotonic(),
                    participant=participant_identity,
                    track_id=attrs.get("lk.transcribed_track_id", ""),
                    text=text,
                )
            )
            self._notify()

        self._spawn(read())

    def agent_transcripts(self) -> list[str]:
        """The agent's own speech as text (not the caller's speech it transcribed)."""
        return [
            t.text
            for t in self.transcripts
            if self.agent is not None
            and t.participant == self.agent.identity
            and t.track_id in ("", self.agent_audio_track_sid)
        ]

    async def next_utterance(self, after: float, within: float) -> AgentUtterance:
        """The first agent utterance that starts after `after`, once it has ended."""

        def done() -> AgentUtterance | None:
            for u in self.utterances:
                if u.started_at > after and u.ended_at is not None:
                    return u
            return None

        await self.wait_for(lambda: done() is not None, within, "the agent's answer")
        found = done()
        assert found is not None
        return found

    async def first_audio_after(self, after: float, within: float) -> float:
        """When the agent's first loud frame after `after` arrived."""

        def onset() -> float | None:
            return next((u.started_at for u in self.utterances if u.started_at > after), None)

        await self.wait_for(lambda: onset() is not None, within, "the agent's first audio")
        found = onset()
        assert found is not None
        return found

    # -- plumbing --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        self._spawn(notify())

    async def wait_for(self, ready: Callable[[], bool], within: float, what: str) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(ready)

        try:
            await asyncio.wait_for(wait(), within)
        except TimeoutError:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}") from None
