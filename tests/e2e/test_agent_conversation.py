"""The sample agent end to end: token endpoint → dispatch → real worker → spoken conversation.

Everything is real and on loopback: livekit-server, the token endpoint (api dispatch of
`test-agent`), the `sample-agent start` worker, and a `livekit.rtc` caller that speaks a question
synthesised offline at real-time pace and transcribes the agent's spoken answer offline.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from livekit import api

from bench.agent_caller import LISTEN_RATE, AgentCaller
from local_stack import AgentWorker, LiveKitServer, TokenServer
from offline_speech import Synthesizer, Transcriber, Voice
from sample_agent.metadata import profile_from_job_metadata
from sample_agent.scripts import greeting, reply
from tests.conftest import TEST_AGENT_NAME, auth_headers

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

JOIN_WITHIN = 30.0  # generous: the worker has a warm process; joining takes ~1-3 s here
ANSWER_WITHIN = 30.0
LEAVE_WITHIN = 30.0
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
    assert body.get("dispatch_id"), body

    # what the agent's script says, computed from the metadata the token endpoint dispatched
    profile = profile_from_job_metadata(
        '{"agent_metadata": "{\\"persona\\": \\"test\\"}", "custom": {"language": "en"}}'
    )
    expected_greeting, expected_answer = greeting(profile), reply(profile, [QUESTION])

    caller = AgentCaller()
    try:
        started = time.monotonic()
        await caller.connect(body["serverUrl"], body["token"])
        agent = await caller.wait_for_agent(within=JOIN_WITHIN)
        joined_after = time.monotonic() - started

        heard_greeting = await caller.next_utterance(after=0.0, within=ANSWER_WITHIN)
        greeting_text = ears.transcribe(heard_greeting.pcm, LISTEN_RATE)
        assert similarity(greeting_text, expected_greeting) > 0.8, greeting_text

        question_ended = await caller.say(caller_voice.synthesize(QUESTION))
        heard_answer = await caller.next_utterance(after=question_ended, within=ANSWER_WITHIN)
        answer_text = ears.transcribe(heard_answer.pcm, LISTEN_RATE)
        assert similarity(answer_text, expected_answer) > 0.8, (answer_text, expected_answer)

        # the framework's transcript of its own speech, on the lk.transcription text streams
        await caller.wait_for(
            lambda: expected_answer in caller.agent_transcripts(), 10.0, "the answer's transcript"
        )
        assert expected_greeting in caller.agent_transcripts()
        assert agent.attributes.get("lk.agent.name") == TEST_AGENT_NAME
        assert agent.attributes.get("lk.agent.state") in ("listening", "thinking", "speaking")
    finally:
        await caller.leave()

    await wait_until_agent_left(livekit_server, room, within=LEAVE_WITHIN)
    assert joined_after < JOIN_WITHIN
    assert agent_worker.process.alive(), agent_worker.process.log_tail()
