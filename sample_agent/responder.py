"""The offline "brain": the scripts in `sample_agent.scripts` behind the framework's LLM interface.

Implementing `llm.LLM` (rather than answering from an event handler) keeps the real pipeline
intact: the session's turn handling, preemptive generation, TTS, transcripts and metrics all see
an ordinary LLM. Swap in a real one (AGENT_PROVIDER=openai) and nothing else changes.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import APIConnectOptions, llm, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from sample_agent.metadata import CallProfile
from sample_agent.scripts import reply


def user_turns(chat_ctx: llm.ChatContext) -> list[str]:
    """What the caller has said so far, one string per turn, oldest first."""
    return [m.text_content or "" for m in chat_ctx.messages() if m.role == "user"]


class ScriptedLLM(llm.LLM):
    """Answers from the call's script; deterministic, instant, no network."""

    def __init__(self, profile: CallProfile) -> None:
        super().__init__()
        self._profile = profile

    @property
    def model(self) -> str:
        return "scripted-responder"

    @property
    def provider(self) -> str:
        return "sample_agent"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _ScriptedStream(
            self,
            profile=self._profile,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
        )


class _ScriptedStream(llm.LLMStream):
    def __init__(
        self,
        llm_: ScriptedLLM,
        *,
        profile: CallProfile,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(llm_, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._profile = profile

    async def _run(self) -> None:
        text = reply(self._profile, user_turns(self._chat_ctx))
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=utils.shortuuid("scripted_"),
                delta=llm.ChoiceDelta(role="assistant", content=text),
            )
        )
