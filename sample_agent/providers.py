"""Which STT, LLM and TTS a call uses: the bundled offline models, or cloud plugins.

`AGENT_PROVIDER=offline` (the default) needs no keys and no network; `AGENT_PROVIDER=openai`
(with OPENAI_API_KEY and the `openai` extra installed) swaps all three for OpenAI's plugins.
The offline models are loaded once per process by `load_offline_models` (the worker's prewarm)
and shared by every call that process serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from livekit.agents import llm, stt, tts

from offline_speech import Synthesizer, Transcriber, Voice
from sample_agent.config import Settings
from sample_agent.metadata import CallProfile
from sample_agent.responder import ScriptedLLM

logger = logging.getLogger("sample_agent.providers")


@dataclass(frozen=True)
class OfflineModels:
    transcriber: Transcriber
    synthesizer: Synthesizer


def load_offline_models(settings: Settings) -> OfflineModels:
    """Load Whisper and hibari (~1-2 s, ~300 MB); call once per process."""
    return OfflineModels(
        transcriber=Transcriber(cpu_threads=settings.stt_threads),
        synthesizer=Synthesizer(Voice.agent(), threads=settings.tts_threads),
    )


@dataclass(frozen=True)
class Pipeline:
    stt: stt.STT | None  # None in text-only mode: no audio in or out
    llm: llm.LLM
    tts: tts.TTS | None


def build_pipeline(
    settings: Settings, profile: CallProfile, models: OfflineModels | None
) -> Pipeline:
    """The three plugins for one call under `settings.provider` (text-only: the LLM alone)."""
    if settings.provider == "openai":
        return _openai_pipeline(settings)
    if settings.text_only:
        return Pipeline(stt=None, llm=ScriptedLLM(profile), tts=None)
    if models is None:
        raise RuntimeError("offline provider selected but the offline models were not loaded")
    from sample_agent.speech import OfflineSTT, OfflineTTS

    return Pipeline(
        stt=OfflineSTT(models.transcriber),
        llm=ScriptedLLM(profile),
        tts=OfflineTTS(models.synthesizer),
    )


def _openai_pipeline(settings: Settings) -> Pipeline:
    try:
        from livekit.plugins import openai
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "AGENT_PROVIDER=openai needs the openai extra: "
            "uv sync --extra agent --extra openai (livekit-plugins-openai)"
        ) from e
    key = settings.openai_api_key
    if not key:
        raise RuntimeError("AGENT_PROVIDER=openai needs OPENAI_API_KEY")
    logger.info(
        "using OpenAI plugins",
        extra={
            "llm": settings.openai_llm_model,
            "stt": settings.openai_stt_model,
            "tts": settings.openai_tts_model,
        },
    )
    model = openai.LLM(model=settings.openai_llm_model, api_key=key)
    if settings.text_only:
        return Pipeline(stt=None, llm=model, tts=None)
    return Pipeline(
        stt=openai.STT(model=settings.openai_stt_model, api_key=key),
        llm=model,
        tts=openai.TTS(
            model=settings.openai_tts_model, voice=settings.openai_tts_voice, api_key=key
        ),
    )
