"""The spoken greeting: synthesised from the job's start, then said as is.

The entrypoint starts the TTS on the script's greeting before it joins the room; `SampleAgent`
says that text with that audio instead of asking the LLM. Real hibari model, real AgentSession.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from livekit.agents import AgentSession, llm

from offline_speech import Synthesizer, Voice
from sample_agent.agent import SampleAgent, _frames
from sample_agent.metadata import profile_from_job_metadata
from sample_agent.responder import ScriptedLLM
from sample_agent.scripts import greeting
from sample_agent.speech import OfflineTTS
from tests.sample_agent.test_agent_text import answer_of, envelope


@pytest.fixture(scope="module")
def synthesizer() -> Synthesizer:
    return Synthesizer(Voice.agent())


async def test_greeting_audio_is_the_synthesis_of_the_greeting(synthesizer: Synthesizer) -> None:
    text = greeting(profile_from_job_metadata(envelope('{"persona": "ava"}')))
    speech = OfflineTTS(synthesizer).synthesize(text)
    frames = [frame async for frame in _frames(speech)]
    pcm = np.concatenate([np.frombuffer(f.data, np.int16) for f in frames])
    assert len(frames) > 1  # streamed in frames, not one block at the end
    assert {f.sample_rate for f in frames} == {synthesizer.sample_rate}
    expected = synthesizer.synthesize(text)
    np.testing.assert_array_equal(pcm[: len(expected)], expected)
    assert not pcm[len(expected) :].any() and len(pcm) - len(expected) <= 480  # framing: <= 20 ms


class CountingLLM(ScriptedLLM):
    calls = 0

    def chat(self, **kwargs: Any) -> llm.LLMStream:
        self.calls += 1
        return super().chat(**kwargs)


async def test_a_prepared_greeting_is_said_without_the_llm(synthesizer: Synthesizer) -> None:
    profile = profile_from_job_metadata(envelope('{"persona": "ava"}'))
    scripted = CountingLLM(profile)
    session: AgentSession[None] = AgentSession(llm=scripted)
    speech = OfflineTTS(synthesizer).synthesize(greeting(profile))
    async with scripted, session:
        run = await session.start(SampleAgent(profile, speech), capture_run=True)
        assert answer_of(run) == greeting(profile)
        assert scripted.calls == 0
        # the conversation goes on from the greeting: the first caller turn gets its answer
        answer = answer_of(await session.run(user_input="What are your opening hours?"))
    assert scripted.calls == 1
    assert "open" in answer.lower()
