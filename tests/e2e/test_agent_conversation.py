"""The sample agent end to end: token endpoint → dispatch → real worker → spoken conversation.

Everything is real and on loopback: livekit-server, the token endpoint (api dispatch of
`test-agent`), the `sample-agent start` worker, and the client harness's own caller (`CallRoom`)
that speaks a question synthesised offline at real-time pace and transcribes the agent's spoken
answer offline.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from livekit import api, rtc

from client_harness.caller.call_room import AGENT_NAME_ATTR, AGENT_STATE_ATTR, CallRoom, Clock
from client_harness.measurement.recorder import AGENT, Recorder
from client_harness.measurement.vad import Utterance
from local_stack import AgentWorker, LiveKitServer, TokenServer
from offline_speech import Synthesizer, Transcriber, Voice
from sample_agent.metadata import profile_from_job_metadata
from sample_agent.scripts import greeting, reply
from tests.conftest import TEST_AGENT_NAME, auth_headers

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

JOIN_WITHIN = 30.0  # generous: the worker has a warm process; joining takes ~1-3 s here
ANSWER_WITHIN = 30.0
LEAVE_WITHIN = 30.0
TRANSCRIPT_WITHIN = 10.0
HEARD_PAD = 0.2  # seconds of the recording kept around an utterance for the transcriber
QUESTION = "What are your opening hours?"

_NUMBERS = {
    w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())
}


def words(text: str) -> list[str]:
    """Lower-case words, digits for small numbers, no punctuation: how Whisper's spelling and
    the script's may differ without the meaning differing."""
    raw = re.findall(r"[a-z0-9']+", text.lower().replace("harbor", "harbour"))
    return [_NUMBERS.get(w, w) for w in raw]


def similarity(heard: str, expected: str) -> float:
    return difflib.SequenceMatcher(None, words(heard), words(expected)).ratio()


@pytest.fixture(scope="module")
def caller_voice() -> Synthesizer:
    return Synthesizer(Voice.caller())


@pytest.fixture(scope="module")
def ears() -> Iterator[Transcriber]:
    yield Transcriber()


async def wait_until_agent_left(livekit: LiveKitServer, room: str, within: float) -> None:
    lkapi = api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
            if not rooms.rooms:
                return
            people = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
            if not any(p.kind == api.ParticipantInfo.Kind.AGENT for p in people.participants):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(
            f"the agent was still in room {room} {within:.0f}s after the caller left"
        )
    finally:
        await lkapi.aclose()


def heard(caller: CallRoom, utterance: Utterance | None, what: str) -> npt.NDArray[np.int16]:
    """The agent's recorded audio of one utterance the caller's VAD found."""
    assert utterance is not None, f"the caller heard no {what} within {ANSWER_WITHIN:.0f}s"
    return caller.recorder.slice(AGENT, utterance.start - HEARD_PAD, utterance.end + HEARD_PAD)


def own_speech_transcripts(caller: CallRoom, agent: rtc.RemoteParticipant) -> list[str]:
    """The agent's finished transcripts of its own speech (not of the caller's speech)."""
    own_tracks = {
        sid for sid, p in agent.track_publications.items() if p.kind == rtc.TrackKind.KIND_AUDIO
    }
    return [
        seg.text
        for seg in caller.agent_text_segments()
        if seg.end is not None and seg.track_id in {"", *own_tracks}
    ]


async def test_dispatched_agent_greets_answers_a_spoken_question_and_leaves_with_the_caller(
    agent_worker: AgentWorker,
    token_server: TokenServer,
    livekit_server: LiveKitServer,
    caller_voice: Synthesizer,
    ears: Transcriber,
) -> None:
    room = str(uuid.uuid4())
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            token_server.endpoint,
            json={"room_name": room, "participant_name": "simulated_user", "language": "en"},
            headers=dict(auth_headers(token_server)),
        )
    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert body.get("agent_name") == TEST_AGENT_NAME, body

    # what the agent's script says, computed from the metadata the token endpoint dispatched
    profile = profile_from_job_metadata(
        '{"agent_metadata": "{\\"persona\\": \\"test\\"}", "custom": {"language": "en"}}'
    )
    expected_greeting, expected_answer = greeting(profile), reply(profile, [QUESTION])

    caller = CallRoom(Clock(), Recorder())
    try:
        started = caller.clock.now()
        await caller.connect(body["serverUrl"], body["token"], within=JOIN_WITHIN)
        await caller.publish_microphone(caller_voice.sample_rate)
        agent = await caller.wait_for_agent(within=JOIN_WITHIN)
        joined_after = caller.clock.now() - started

        greeting_heard = await caller.next_utterance(after=0.0, within=ANSWER_WITHIN)
        greeting_text = ears.transcribe(
            heard(caller, greeting_heard, "greeting"), caller.recorder.rate
        )
        assert similarity(greeting_text, expected_greeting) > 0.8, greeting_text

        _, question_ended = await caller.speak(caller_voice.synthesize(QUESTION))
        answer_heard = await caller.next_utterance(after=question_ended, within=ANSWER_WITHIN)
        answer_text = ears.transcribe(heard(caller, answer_heard, "answer"), caller.recorder.rate)
        assert similarity(answer_text, expected_answer) > 0.8, (answer_text, expected_answer)

        # the framework's transcript of its own speech, on the lk.transcription text streams
        greeting_line, answer_line = (
            " ".join(t.split()) for t in (expected_greeting, expected_answer)
        )
        assert await caller.wait_until(
            lambda: answer_line in own_speech_transcripts(caller, agent), TRANSCRIPT_WITHIN
        ), own_speech_transcripts(caller, agent)
        assert greeting_line in own_speech_transcripts(caller, agent)
        assert agent.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        assert agent.attributes.get(AGENT_NAME_ATTR) == TEST_AGENT_NAME
        assert agent.attributes.get(AGENT_STATE_ATTR) in ("listening", "thinking", "speaking")
    finally:
        await caller.close()

    await wait_until_agent_left(livekit_server, room, within=LEAVE_WITHIN)
    assert joined_after < JOIN_WITHIN
    assert agent_worker.process.alive(), agent_worker.process.log_tail()
