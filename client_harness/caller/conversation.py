"""Step 7 of the platform's flow: hold the scripted conversation, spoken or in text.

Voice: each caller turn is synthesised offline (hibari, the caller voice) and published at
real-time pace; the agent's reply is found by VAD on its audio, waited out (until its speech and
its `lk.agent.state` say it is done, or a max wait), and transcribed offline.
Text: each turn goes out on `lk.chat`; the reply is the agent's `lk.transcription` segments.
Either way the caller waits for the agent's greeting first and for each reply before going on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from client_harness.caller.call_room import CallRoom, TextSegment
from client_harness.caller.speech import Speech
from client_harness.measurement.metrics import Interval, SimulationResult, TurnRecord
from client_harness.measurement.recorder import AGENT
from client_harness.measurement.vad import Utterance
from client_harness.scenario import Scenario, Turn

TRANSCRIBE_PAD_SECONDS = 0.15
TEXT_SETTLE_SECONDS = 0.6  # quiet after a closed transcription segment that ends a text reply


class Conversation:
    """Runs `scenario` over `room`, filling `result` as it goes (a cut-off run keeps its part)."""

    def __init__(
        self,
        room: CallRoom,
        scenario: Scenario,
        speech: Speech,
        result: SimulationResult,
        mode: str,
    ) -> None:
        self.room = room
        self.scenario = scenario
        self.speech = speech
        self.result = result
        self.mode = mode
        self._transcripts: dict[int, asyncio.Task[str]] = {}  # by id() of the VAD utterance
        room.on_utterance_end = self._utterance_ended

    # ---- shared --------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.scenario
        if self.mode == "voice":
            await self.room.publish_microphone(self.speech.sample_rate)
        # the greeting is whatever the agent says before the first caller turn: its text can
        # even arrive a moment before the event announcing the agent (see CallRoom)
        await self._agent_reply(after=0.0, start_timeout=s.greeting_wait_seconds)
        for index, turn in enumerate(s.turns, 1):
            await asyncio.sleep(s.pause_before_reply_seconds)
            if self.room.agent_left.is_set():
                return  # nobody to say the rest to: the call ended at the agent's side
            record = await self._caller_turn(index, turn)
            self.result.turns.append(record)
            reply = await self._agent_reply(
                after=record.caller_start, start_timeout=s.response_timeout_seconds
            )
            if reply is not None:
                record.agent_start, record.agent_end = reply

    async def _agent_reply(self, after: float, start_timeout: float) -> tuple[float, float] | None:
        if self.mode == "voice":
            return await self._voice_reply(after, start_timeout)
        return await self._text_reply(after, start_timeout)

    async def _caller_turn(self, index: int, turn: Turn) -> TurnRecord:
        if self.mode == "voice":
            pcm = await self.speech.synthesize(turn.say)
            start, end = await self.room.speak(pcm)
        else:
            start = end = await self.room.send_chat(turn.say)  # a chat message has no length
        self.result.caller_utterances.append(Interval(start, end, turn.say))
        return TurnRecord(index, turn.say, start, end, expect_any=turn.expect_any)

    # ---- voice ---------------------------------------------------------------------------

    def _utterance_ended(self, utterance: Utterance) -> None:
        pcm = self.room.recorder.slice(
            AGENT, utterance.start - TRANSCRIBE_PAD_SECONDS, utterance.end + TRANSCRIBE_PAD_SECONDS
        )
        self._transcripts[id(utterance)] = asyncio.get_running_loop().create_task(
            self.speech.transcribe(pcm, self.room.recorder.rate)
        )

    def _utterances_since(self, after: float) -> list[Utterance]:
        return [u for u in self.room.vad.utterances if u.start > after]

    async def _voice_reply(self, after: float, start_timeout: float) -> tuple[float, float] | None:
        room, vad = self.room, self.room.vad

        def started() -> bool:
            current = vad.current
            return bool(self._utterances_since(after)) or (
                current is not None and current.start > after
            )

        if not await room.wait_until(started, start_timeout):
            return None
        # Wait out the whole reply: silent long enough for the VAD and not busy by its own account.
        done: Callable[[], bool] = lambda: not vad.speaking and not room.agent_busy()  # noqa: E731
        await room.wait_until(done, self.scenario.max_agent_turn_seconds)
        spoken = self._utterances_since(after)
        if not spoken and vad.current is not None:
            return vad.current.start, room.clock.now()
        if not spoken:
            return None
        return spoken[0].start, (vad.current.end if vad.current else spoken[-1].end)

    async def finish_voice(self) -> None:
        """Close an utterance still open, collect every transcript, fill the result."""
        self.room.vad.flush()
        utterances = self.room.vad.utterances
        for utterance in utterances:  # also those that ended before this object existed
            if id(utterance) not in self._transcripts:
                self._utterance_ended(utterance)
        self.result.agent_utterances = [
            Interval(u.start, u.end, await self._transcripts[id(u)]) for u in utterances
        ]
        for turn in self.result.turns:
            if turn.agent_start is None:
                continue
            end = turn.agent_end if turn.agent_end is not None else turn.agent_start
            turn.agent_text = " ".join(
                iv.text
                for iv in self.result.agent_utterances
                if turn.agent_start - 0.01 <= iv.start <= end + 0.01 and iv.text
            )

    # ---- text ----------------------------------------------------------------------------

    def _segments_since(self, after: float) -> list[TextSegment]:
        return [seg for seg in self.room.agent_text_segments() if seg.start > after]

    async def _text_reply(self, after: float, start_timeout: float) -> tuple[float, float] | None:
        room = self.room
        if not await room.wait_until(lambda: bool(self._segments_since(after)), start_timeout):
            return None

        def done() -> bool:
            segments = self._segments_since(after)
            if any(seg.end is None for seg in segments) or room.agent_busy():
                return False
            last_end = max(seg.end or 0.0 for seg in segments)
            return room.clock.now() - last_end >= TEXT_SETTLE_SECONDS

        await room.wait_until(done, self.scenario.max_agent_turn_seconds)
        segments = self._segments_since(after)
        end = max((seg.end or room.clock.now()) for seg in segments)
        return segments[0].start, end

    def finish_text(self) -> None:
        now = self.room.clock.now()
        self.result.agent_utterances = [
            Interval(seg.start, seg.end if seg.end is not None else now, seg.text)
            for seg in self.room.agent_text_segments()
        ]
        for turn in self.result.turns:
            if turn.agent_start is None:
                continue
            end = turn.agent_end if turn.agent_end is not None else now
            turn.agent_text = " ".join(
                seg.text
                for seg in self.room.agent_text_segments()
                if turn.agent_start <= seg.start <= end and seg.text
            )
