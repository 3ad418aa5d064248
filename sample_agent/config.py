"""The worker's settings, read once from the environment into one typed object.

Everything tunable lives here so the rest of the package takes a `Settings` and never reads
`os.environ` itself. The object is a frozen dataclass of plain values: the framework pickles the
job entrypoint (and so these settings) into each job process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Provider = Literal["offline", "openai"]
PROVIDERS: tuple[Provider, ...] = ("offline", "openai")
JobExecutor = Literal["process", "thread"]
JOB_EXECUTORS: tuple[JobExecutor, ...] = ("process", "thread")
REQUIRED_LIVEKIT_VARS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    agent_name: str = "sample-agent"
    """AGENT_NAME: the name the worker registers under; only explicit dispatches reach it."""
    provider: Provider = "offline"
    """AGENT_PROVIDER: `offline` (bundled models, no keys) or `openai` (needs OPENAI_API_KEY)."""
    openai_api_key: str | None = None
    openai_llm_model: str = "gpt-4o-mini"
    openai_stt_model: str = "gpt-4o-mini-transcribe"
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "ash"
    job_executor: JobExecutor = "process"
    """AGENT_JOB_EXECUTOR: `process` (one job process per call, the framework's default: a call
    that crashes or leaks takes nothing else down) or `thread` (every call a thread of the
    worker's one process, sharing one copy of the models: no per-call process start or model
    load, ~250 MB less per call). Measured with livekit 1.1.21: with ~10 calls starting at once
    in one process, a call's room now and then never finishes connecting (the agent joins on
    the server, its Python side never sees the connect, and leaves ~15 s later); use `process`
    unless you have measured otherwise."""
    text_only: bool = False
    """AGENT_TEXT_ONLY: take caller turns only as text (`lk.chat`) and answer only as text
    (`lk.transcription`): no audio track in either direction, no STT or TTS. For text-mode load
    runs: with many calls in one process (thread executor) every audio frame's event is handed
    to every call's room, so audio costs grow with the square of the calls."""
    max_calls: int = 3
    """AGENT_MAX_CALLS: calls one worker takes at once before it reports itself full.

    Counted, not measured: the framework's default (machine CPU above 70%) flaps on a small
    shared machine and refuses dispatches because of other programs' load. Set it from
    bench/agent_latency.py's concurrency figure for the machine. 3 is that figure on 2 cores: a
    call in conversation costs ~0.2-0.27 of a core, but the turn latency's p95 stays under 2 s
    only up to 3 calls in every run (4 calls: 1.88 s in one run, 4.05 s in another)."""
    num_idle_processes: int = 3
    """AGENT_IDLE_PROCESSES: job processes kept warm (models loaded) in `start` mode; defaults
    to AGENT_MAX_CALLS, so every slot the worker advertises starts its call at once (a cold
    process loads its models first: 1.6-7 s here). The framework warms only as many as there
    are free slots, so this holds no more memory than full load does anyway (~350 MB RSS each
    with the offline models; a text-only one loads none)."""
    job_memory_warn_mb: float = 1000
    drain_timeout: int = 60
    """AGENT_DRAIN_TIMEOUT: seconds a stopping worker waits for calls in progress."""
    http_port: int = 0
    """AGENT_HTTP_PORT: the worker's health endpoint; 0 picks a free port."""
    http_host: str = "127.0.0.1"
    """AGENT_HTTP_HOST: interface of the health endpoint (0.0.0.0 inside a container)."""
    silence_seconds: float = 0.8
    """AGENT_SILENCE_SECONDS: silence after the caller's last word that ends their turn.

    0.5 s cuts a speaker who pauses between sentences; 0.8 s does not."""
    vad_silence_seconds: float = 0.35
    """AGENT_VAD_SILENCE_SECONDS: silence after which silero reports end of speech and the STT
    starts on the utterance. The session's endpointing delay counts from the last word too, so
    transcription runs inside the rest of the cut-off instead of after it."""
    sync_transcription: bool = False
    """AGENT_SYNC_TRANSCRIPTION: pace the `lk.transcription` text with the audio, word by word.

    Off by default: the framework's synchroniser estimates speaking rate with a Python-loop STFT
    on the job's event loop, which on 2 busy cores stalls the first audio frames of each answer
    by 0.1-1 s. Off, each answer's full text is published as soon as it is generated."""
    caller_timeout_seconds: float = 120.0
    """AGENT_CALLER_TIMEOUT: how long a dispatched agent waits for someone to join its room."""
    stt_threads: int = 1
    tts_threads: int = 1


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} must be between {low} and {high}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: the process environment); raises SettingsError."""
    env = os.environ if env is None else env
    provider = env.get("AGENT_PROVIDER", "offline").strip().lower() or "offline"
    if provider not in PROVIDERS:
        raise SettingsError(f"AGENT_PROVIDER={provider!r} must be one of {', '.join(PROVIDERS)}")
    openai_key = env.get("OPENAI_API_KEY", "").strip() or None
    if provider == "openai" and openai_key is None:
        raise SettingsError("AGENT_PROVIDER=openai needs OPENAI_API_KEY")
    executor = env.get("AGENT_JOB_EXECUTOR", "process").strip().lower() or "process"
    if executor not in JOB_EXECUTORS:
        raise SettingsError(
            f"AGENT_JOB_EXECUTOR={executor!r} must be one of {', '.join(JOB_EXECUTORS)}"
        )
    defaults = Settings()
    max_calls = _int(env, "AGENT_MAX_CALLS", defaults.max_calls, minimum=1)
    silence = _float(env, "AGENT_SILENCE_SECONDS", defaults.silence_seconds, 0.2, 5.0)
    return Settings(
        agent_name=env.get("AGENT_NAME", "").strip() or defaults.agent_name,
        provider=provider,  # checked against PROVIDERS above
        openai_api_key=openai_key,
        openai_llm_model=env.get("OPENAI_LLM_MODEL", "").strip() or defaults.openai_llm_model,
        openai_stt_model=env.get("OPENAI_STT_MODEL", "").strip() or defaults.openai_stt_model,
        openai_tts_model=env.get("OPENAI_TTS_MODEL", "").strip() or defaults.openai_tts_model,
        openai_tts_voice=env.get("OPENAI_TTS_VOICE", "").strip() or defaults.openai_tts_voice,
        job_executor=executor,  # checked against JOB_EXECUTORS above
        text_only=_flag(env, "AGENT_TEXT_ONLY"),
        num_idle_processes=_int(env, "AGENT_IDLE_PROCESSES", max_calls),
        max_calls=max_calls,
        job_memory_warn_mb=_float(env, "AGENT_JOB_MEMORY_WARN_MB", 1000, 100, 1e6),
        drain_timeout=_int(env, "AGENT_DRAIN_TIMEOUT", defaults.drain_timeout),
        http_port=_int(env, "AGENT_HTTP_PORT", defaults.http_port),
        http_host=env.get("AGENT_HTTP_HOST", "").strip() or defaults.http_host,
        silence_seconds=silence,
        vad_silence_seconds=min(
            silence,
            _float(env, "AGENT_VAD_SILENCE_SECONDS", defaults.vad_silence_seconds, 0.1, 5.0),
        ),
        sync_transcription=_flag(env, "AGENT_SYNC_TRANSCRIPTION"),
        caller_timeout_seconds=_float(env, "AGENT_CALLER_TIMEOUT", 120.0, 1.0, 86_400.0),
        stt_threads=_int(env, "AGENT_STT_THREADS", defaults.stt_threads, minimum=1),
        tts_threads=_int(env, "AGENT_TTS_THREADS", defaults.tts_threads, minimum=1),
    )


def missing_livekit_vars(env: Mapping[str, str] | None = None) -> list[str]:
    """The connection variables the worker needs and `env` lacks (empty counts as missing)."""
    env = os.environ if env is None else env
    return [name for name in REQUIRED_LIVEKIT_VARS if not env.get(name, "").strip()]
