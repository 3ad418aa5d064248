"""The sample voice agent: a livekit-agents worker that answers calls it is dispatched to by name.

Read top to bottom:

1. `build_server` registers the worker under AGENT_NAME (explicit dispatch only: a room gets this
   agent only when a token or the dispatch API names it), gives it the LiveKit URL and key pair
   from the settings and sizes its pool of job processes.
2. `prewarm` runs once in every job process before it takes a call: it loads the VAD and the
   offline speech models, so a call starts talking without waiting for weights. With
   AGENT_JOB_EXECUTOR=thread every call is a thread of the worker's process instead, and the
   models are loaded once and shared by all of them (the speech models are lock-protected).
3. `entrypoint` runs once per call: it reads the dispatch metadata into a `CallProfile`, builds
   STT / LLM / TTS for the configured provider, starts synthesising the greeting, joins the
   room, waits for the caller and starts an `AgentSession` with them.
4. `SampleAgent` greets first, with the audio synthesised meanwhile; the session then answers
   every caller turn and publishes the transcript (`lk.transcription`) and its state
   (`lk.agent.state`) on its own.
5. When the caller leaves, the session closes and the job ends, so the agent leaves the room.
   So does a job whose room livekit-server lost (it restarted): its slot is free again at once.

Turn handling is VAD-based (silero, weights inside the plugin wheel): in development mode the
framework's default turn detector and interruption detector would call LiveKit's cloud, and
this agent must run with no network beyond the LiveKit server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from livekit import api, rtc
from livekit.agents import (
    NOT_GIVEN,
    Agent,
    AgentServer,
    AgentSession,
    CloseEvent,
    ConversationItemAddedEvent,
    JobContext,
    JobExecutorType,
    JobProcess,
    TurnHandlingOptions,
    metrics,
    room_io,
    stt,
    tts,
    vad,
)
from livekit.plugins import silero

from sample_agent.capacity import FULL_LOAD, CallSlots, call_load
from sample_agent.config import Settings
from sample_agent.metadata import CallProfile, profile_from_job_metadata
from sample_agent.providers import OfflineModels, build_pipeline, load_offline_models
from sample_agent.scripts import greeting, instructions

logger = logging.getLogger("sample_agent")


class SampleAgentServer(AgentServer):
    """The framework's AgentServer, remembering why `run()` failed.

    The framework's CLI logs "worker failed" and returns normally when `run()` raises (for
    instance when it gave up connecting to LiveKit); `failure` lets `sample-agent` exit
    non-zero then. Overrides only the public `run()`."""

    failure: Exception | None = None

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        try:
            await super().run(devmode=devmode, unregistered=unregistered)
        except Exception as exc:
            self.failure = exc
            raise


def server_options(settings: Settings) -> dict[str, Any]:
    """The AgentServer's constructor arguments: everything from `settings`, nothing from the
    environment (the framework falls back to LIVEKIT_* variables only for what is not given)."""
    return {
        "ws_url": settings.livekit_url,
        "api_key": settings.livekit_api_key,
        "api_secret": settings.livekit_api_secret,
        "max_retry": settings.connect_retries,
        "job_executor_type": JobExecutorType(settings.job_executor),
        "num_idle_processes": settings.num_idle_processes,
        "load_fnc": functools.partial(call_load, max_calls=settings.max_calls),
        "load_threshold": FULL_LOAD,
        "job_memory_warn_mb": settings.job_memory_warn_mb,
        "drain_timeout": settings.drain_timeout,
        "host": settings.http_host,
        "port": settings.http_port,
        # loading Whisper + hibari takes 1-2 s alone, several times that on a busy 2-core box
        "initialize_process_timeout": 120.0,
        "setup_fnc": functools.partial(prewarm, settings=settings),
    }


def build_server(settings: Settings) -> SampleAgentServer:
    """The worker: one job process (or thread) per call, `num_idle_processes` of them warm,
    AGENT_MAX_CALLS calls at once, counted in calls (sample_agent/capacity.py)."""
    server = SampleAgentServer(**server_options(settings))
    # partial(), not a closure: the framework pickles the entrypoint into each job process
    # (on_request runs in this process and is not pickled)
    server.rtc_session(
        functools.partial(entrypoint, settings=settings),
        agent_name=settings.agent_name,
        on_request=CallSlots(server, settings.max_calls).on_request,
    )
    return server


def prewarm(proc: JobProcess, settings: Settings) -> None:
    """Give the job process (or thread) its models; every call it serves reuses them."""
    started = time.perf_counter()
    turn_vad, models = _process_models(settings)
    proc.userdata["vad"] = turn_vad  # None for a text-only agent: it hears no audio
    if models is not None:
        proc.userdata["models"] = models
    logger.info(
        "process prewarmed",
        extra={
            "provider": settings.provider,
            "executor": settings.job_executor,
            "seconds": round(time.perf_counter() - started, 2),
        },
    )


_models_lock = threading.Lock()
_models: tuple[vad.VAD | None, OfflineModels | None] | None = None


def _process_models(settings: Settings) -> tuple[vad.VAD | None, OfflineModels | None]:
    """The VAD and offline models of this OS process, loaded on first use.

    A job process serves one call, so this loads once per call; job threads (thread executor)
    all share the first thread's copy instead of loading ~250 MB and ~3 s of CPU each.
    A text-only agent hears and speaks no audio: it loads nothing."""
    global _models
    if settings.text_only:
        return None, None
    with _models_lock:
        loaded = _models
        if loaded is None:
            turn_vad = silero.VAD.load(min_silence_duration=settings.vad_silence_seconds)
            models = None
            if settings.provider == "offline":
                models = load_offline_models(settings)
                # the first inference pays one-off allocation costs: pay them here
                models.synthesizer.synthesize("Hello.")
                models.transcriber.transcribe(np.zeros(16_000, np.int16), 16_000)
            loaded = _models = (turn_vad, models)
        return loaded


class SampleAgent(Agent):
    """The agent's part in the session: its instructions, and speaking first.

    `greeting_audio`, when given, is the script's greeting already being synthesised (see
    `entrypoint`): the agent says it as is, so its first audio waits for neither the LLM nor the
    TTS. Without it (text-only), the LLM answers a conversation without caller turns with the
    greeting."""

    def __init__(
        self, profile: CallProfile, greeting_audio: tts.ChunkedStream | None = None
    ) -> None:
        super().__init__(instructions=instructions(profile))
        self._greeting_audio = greeting_audio

    async def on_enter(self) -> None:
        if self._greeting_audio is None:
            self.session.generate_reply()
            return
        speech = self._greeting_audio
        self.session.say(speech.input_text, audio=_frames(speech))


async def _frames(speech: tts.ChunkedStream) -> AsyncIterator[rtc.AudioFrame]:
    async with speech:
        async for audio in speech:
            yield audio.frame


def turn_handling(settings: Settings) -> TurnHandlingOptions:
    """VAD-only turn handling: nothing here calls LiveKit's cloud inference."""
    if settings.text_only:  # each chat message is a whole turn: nothing to detect
        return {"turn_detection": "manual", "interruption": {"enabled": False}}
    return {
        "turn_detection": "vad",
        "endpointing": {"mode": "fixed", "min_delay": settings.silence_seconds},
        "interruption": {"mode": "vad"},
        # the transcript is usually ready before the cut-off ends: start the reply's LLM and
        # TTS then, so the first audio is waiting when the turn is confirmed
        "preemptive_generation": {"enabled": True, "preemptive_tts": True},
    }


async def entrypoint(ctx: JobContext, settings: Settings) -> None:
    """One call: profile from metadata, pipeline from settings, session with the caller."""
    started = time.perf_counter()
    profile = profile_from_job_metadata(ctx.job.metadata)
    pipeline = build_pipeline(settings, profile, ctx.proc.userdata.get("models"))
    # the greeting is known now: synthesise it while the agent joins and meets the caller
    greeting_audio = pipeline.tts.synthesize(greeting(profile)) if pipeline.tts else None
    session: AgentSession[None] = AgentSession(
        stt=pipeline.stt or NOT_GIVEN,  # text-only: no STT, no TTS
        llm=pipeline.llm,
        tts=pipeline.tts or NOT_GIVEN,
        vad=ctx.proc.userdata["vad"],
        turn_handling=turn_handling(settings),
    )
    _log_turns(session, ctx.room.name)
    _log_speech_metrics(ctx.room.name, *(p for p in (pipeline.stt, pipeline.tts) if p is not None))

    @session.on("close")
    def _on_close(ev: CloseEvent) -> None:
        # the session closes when the caller leaves; end the job so the agent leaves too
        logger.info("session closed", extra={"reason": ev.reason.value, "room": ctx.room.name})
        ctx.shutdown(reason=f"session closed: {ev.reason.value}")

    # join now (the platform waits for the agent to appear), greet once the caller is here:
    # a greeting spoken into an empty room, or its transcript, would be lost
    await ctx.connect()
    connected = time.perf_counter()
    if _agent_already_here(ctx, settings.agent_name):
        # a second dispatch of this room was taken too (a dispatcher retrying an offer that was
        # slow to show): the caller keeps the agent that came first; its dispatcher removes ours
        logger.warning(
            "an agent of this name is already in the room; leaving", extra={"room": ctx.room.name}
        )
        ctx.shutdown(reason="another agent already serves this room")
        await _discard(greeting_audio)
        return
    _end_job_when_room_is_gone(ctx)
    try:
        caller = await asyncio.wait_for(ctx.wait_for_participant(), settings.caller_timeout_seconds)
    except TimeoutError:
        logger.warning("nobody joined; leaving", extra={"room": ctx.room.name})
        ctx.shutdown(reason="no caller")
        await _discard(greeting_audio)
        return
    caller_found = time.perf_counter()

    await session.start(
        agent=SampleAgent(profile, greeting_audio),
        room=ctx.room,
        room_options=room_io.RoomOptions(
            participant_identity=caller.identity,
            # the framework's default input gain control runs on the job's event loop for every
            # frame; a phone-like caller (or a simulator's TTS) needs none
            audio_input=False
            if settings.text_only
            else room_io.AudioInputOptions(auto_gain_control=False),
            audio_output=not settings.text_only,
            text_output=room_io.TextOutputOptions(sync_transcription=settings.sync_transcription),
        ),
    )
    logger.info(
        "call started",
        extra={
            "room": ctx.room.name,
            "caller": caller.identity,
            "variant": profile.variant,
            # where the job's start went, in seconds from the entrypoint
            "startup_s": {
                "connected": round(connected - started, 3),
                "caller_found": round(caller_found - started, 3),
                "session_started": round(time.perf_counter() - started, 3),
            },
        },
    )


async def _discard(speech: tts.ChunkedStream | None) -> None:
    if speech is not None:
        await speech.aclose()


def _agent_already_here(ctx: JobContext, agent_name: str) -> bool:
    return any(
        p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        and p.attributes.get("lk.agent.name") == agent_name
        for p in ctx.room.remote_participants.values()
    )


def _end_job_when_room_is_gone(ctx: JobContext) -> None:
    """End the call's job as soon as the room it was dispatched to no longer exists.

    When livekit-server restarts (a crash, a deploy), its rooms are gone, but the job's room
    connection reconnects on its own: into a new, empty room of the same name, created by that
    very rejoin. Nobody will call into it, yet the job would hold its slot until that room's
    empty timeout (~5 min), the worker reporting itself full all along. So after every
    reconnect, ask the server whether the room with the dispatched sid is still there (one
    ListRooms call by name; the SDK's own sid update can come late or not at all). A room that
    stays unreachable ends the job already: the framework shuts a job down when its room
    disconnects for good."""
    dispatched_sid = ctx.job.room.sid
    checks: set[asyncio.Task[None]] = set()

    async def end_if_gone() -> None:
        try:
            found = await ctx.api.room.list_rooms(api.ListRoomsRequest(names=[ctx.room.name]))
        except Exception as exc:  # the server is flapping: the next reconnect asks again
            logger.warning("could not check the call's room", extra={"error": repr(exc)})
            return
        sids = [r.sid for r in found.rooms]
        if dispatched_sid in sids:
            return
        logger.warning(
            "the call's room is gone (livekit-server lost it); ending the job",
            extra={"room": ctx.room.name, "dispatched_sid": dispatched_sid, "sids_now": sids},
        )
        ctx.shutdown(reason="room gone")

    @ctx.room.on("reconnected")
    def _on_reconnected() -> None:
        if not dispatched_sid:  # a job without a room sid (a console or simulated job)
            return
        task = asyncio.create_task(end_if_gone())
        checks.add(task)
        task.add_done_callback(checks.discard)


def _log_turns(session: AgentSession[Any], room: str) -> None:
    """One log line per conversation turn, with the framework's per-turn latency metrics. The
    room is named in the line itself: with the thread executor the framework adds no job fields."""

    @session.on("conversation_item_added")
    def _on_item(ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        role = getattr(item, "role", None)
        if role not in ("user", "assistant"):
            return
        logger.info(
            "turn",
            extra={
                "room": room,
                "role": role,
                "text": getattr(item, "text_content", None),
                "turn_metrics": dict(getattr(item, "metrics", None) or {}),
            },
        )


def _log_speech_metrics(room: str, *plugins: stt.STT | tts.TTS) -> None:
    """STT and TTS processing time against audio duration (their real-time factor), per request."""

    def log(m: metrics.STTMetrics | metrics.TTSMetrics) -> None:
        logger.info(
            "pipeline metrics",
            extra={
                "room": room,
                "kind": m.type,
                "duration": round(m.duration, 4),
                "audio_duration": round(m.audio_duration, 4),
                "ttfb": round(getattr(m, "ttfb", -1.0), 4),
            },
        )

    for plugin in plugins:
        plugin.on("metrics_collected", log)
