"""Text-mode evals of the sample agent with the framework's own testing helpers.

A real `AgentSession` runs the real `SampleAgent` with the offline responder as its LLM; no room,
no audio. `session.start(..., capture_run=True)` captures the greeting, `session.run(user_input=)`
one caller turn, and `expect` walks the events each produced.
"""

from __future__ import annotations

import json

import pytest
from livekit.agents import AgentSession
from livekit.agents.voice.run_result import RunResult

from sample_agent.agent import SampleAgent
from sample_agent.metadata import CallProfile, profile_from_job_metadata
from sample_agent.responder import ScriptedLLM


def envelope(agent_metadata: str = "", **custom: str) -> str:
    """Job metadata as the token endpoint writes it."""
    return json.dumps(
        {
            "room_name": "room-1",
            "participant_name": "simulated_user",
            "participant_identity": "simulated_user-abc",
            "agent_metadata": agent_metadata,
            "custom": custom,
        }
    )


class Call:
    """One text-mode session: `greeting` is the captured first run."""

    def __init__(self, job_metadata: str) -> None:
        self.profile: CallProfile = profile_from_job_metadata(job_metadata)
        self.llm = ScriptedLLM(self.profile)
        self.session: AgentSession[None] = AgentSession(llm=self.llm)

    async def __aenter__(self) -> Call:
        await self.llm.__aenter__()
        await self.session.__aenter__()
        self.greeting = await self.session.start(SampleAgent(self.profile), capture_run=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.__aexit__(None, None, None)
        await self.llm.aclose()

    async def say(self, text: str) -> str:
        """The agent's one spoken answer to `text` (asserted to be exactly one message)."""
        result: RunResult[None] = await self.session.run(user_input=text)
        return answer_of(result)


def answer_of(result: RunResult[None]) -> str:
    result.expect.skip_next_event_if(type="agent_handoff")
    message = result.expect.next_event().is_message(role="assistant").event().item
    result.expect.no_more_events()
    return message.text_content or ""


async def test_greets_first_with_the_persona_from_configured_metadata() -> None:
    async with Call(envelope('{"persona": "ava"}')) as call:
        greeting = answer_of(call.greeting)
    assert greeting.startswith("Hello, thanks for calling Bella Vista. This is Ava.")


async def test_a_role_persona_is_not_read_as_a_name() -> None:
    metadata = envelope('{"persona": "restaurant-host", "restaurant": "Luigi\'s"}')
    async with Call(metadata) as call:
        greeting = answer_of(call.greeting)
    assert greeting.startswith("Hello, thanks for calling Luigi's. This is Sam.")


async def test_books_a_table_when_every_detail_comes_in_one_turn() -> None:
    async with Call(envelope()) as call:
        answer = await call.say("Hi, I'd like to book a table for two tomorrow at seven.")
    assert answer.startswith("All set: a table for two tomorrow at seven.")


async def test_booking_asks_for_what_is_missing_over_several_turns() -> None:
    async with Call(envelope()) as call:
        assert await call.say("Can I make a reservation?") == (
            "I'd be happy to book a table. For how many people?"
        )
        assert await call.say("4 people please") == "For which day?"
        assert await call.say("Friday") == "At what time?"
        final = await call.say("at 8 30 in the evening")
    assert final.startswith("All set: a table for four on friday at eight thirty in the evening.")


async def test_answers_a_recognised_question() -> None:
    async with Call(envelope()) as call:
        answer = await call.say("What are your opening hours?")
    assert answer == "We are open every day from noon until ten in the evening, except Mondays."


async def test_asks_a_clarifying_question_when_it_does_not_understand() -> None:
    async with Call(envelope()) as call:
        answer = await call.say("What is the weather like on Mars?")
    assert answer.startswith("Sorry, I didn't get that.")
    assert answer.endswith("Which would you like?")


async def test_custom_request_fields_pick_the_support_script() -> None:
    async with Call(envelope('{"persona": "ava"}', agent_variant="support")) as call:
        greeting = answer_of(call.greeting)
        answer = await call.say("I forgot my password")
    assert greeting.startswith("Hi, you've reached Acme Support. My name is Ava.")
    assert answer.startswith("I've sent a password reset link")


async def test_python_dict_metadata_as_the_platform_docs_show_it() -> None:
    metadata = envelope("{'persona': 'max', 'agent_variant': 'sales', 'capabilities': ['voice']}")
    async with Call(metadata) as call:
        greeting = answer_of(call.greeting)
        answer = await call.say("How much does it cost?")
    assert greeting == (
        "Hello, this is Max from Acme. Are you interested in our plans or in booking a demo?"
    )
    assert answer.startswith("Our starter plan is twenty dollars a month")
    assert call.profile.extra == {"capabilities": ["voice"]}


@pytest.mark.parametrize(
    ("job_metadata", "expected_greeting"),
    [
        # not JSON at all, and not the token endpoint's envelope: a plain variant name
        ("support", "Hi, you've reached Acme Support. My name is Sam."),
        # free text inside the envelope: kept as a note, the default script runs
        (envelope("be nice to callers"), "Hello, thanks for calling Bella Vista. This is Sam."),
        # broken JSON from another dispatcher
        ('{"persona": "ava", ', "Hello, thanks for calling Bella Vista. This is Sam."),
        ("", "Hello, thanks for calling Bella Vista. This is Sam."),
    ],
)
async def test_non_json_metadata_never_stops_the_call(
    job_metadata: str, expected_greeting: str
) -> None:
    async with Call(job_metadata) as call:
        greeting = answer_of(call.greeting)
        answer = await call.say("Where are you located?")
    assert greeting.startswith(expected_greeting)
    assert answer  # the call goes on


async def test_other_languages_are_declined_honestly() -> None:
    async with Call(envelope(language="fr")) as call:
        greeting = answer_of(call.greeting)
    assert greeting.endswith("I'm sorry, I can only speak English, not fr.")
