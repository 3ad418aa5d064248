"""The worker's settings, read once from the environment into one typed object.

Everything tunable lives here so the rest of the package takes a `Settings` and never reads
`os.environ` itself. The object is a frozen dataclass of plain values: the framework pickles the
job entrypoint (and so these settings) into each job process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from kit_settings import EnvReader, SettingsError

Provider = Literal["offline", "openai"]
PROVIDERS: tuple[Provider, ...] = ("offline", "openai")
JobExecutor = Literal["process", "thread"]
JOB_EXECUTORS: tuple[JobExecutor, ...] = ("process", "thread")
REQUIRED_LIVEKIT_VARS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
LIVEKIT_URL_SCHEMES = ("ws", "wss", "http", "https")  # the framework turns http(s) into ws(s)

__all__ = ["Settings", "SettingsError", "load_settings"]  # SettingsError: kit_settings's own


@dataclass(frozen=True)
class Settings:
    livekit_url: str = ""
    """LIVEKIT_URL: the LiveKit server the worker registers with (ws://, wss://, http(s)://)."""
    livekit_api_key: str = ""
    """LIVEKIT_API_KEY / LIVEKIT_API_SECRET: a key pair the server accepts. Passed to the
    framework's AgentServer as arguments; the secret never appears in a repr."""
    livekit_api_secret: str = field(default="", repr=False)
    connect_retries: int = 16
    """AGENT_CONNECT_RETRIES: failed connection attempts to the LiveKit server the worker makes
    before it gives up and exits 1 (the framework's `max_retry`; ~2 min at the default)."""
    agent_name: str = "sample-agent"
    """AGENT_NAME: the name the worker registers under; only explicit dispatches reach it."""
    provider: Provider = "offline"
    """AGENT_PROVIDER: `offline` (bundled models, no keys) or `openai` (needs OPENAI_API_KEY)."""
    openai_api_key: str | None = field(default=None, repr=False)
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
    job_memory_warn_mb: float = 1000.0
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


def load_settings(
    env: Mapping[str, str] | None = None, *, require_livekit: bool = False
) -> Settings:
    """Settings from `env` (default: the process environment).

    Raises SettingsError listing every problem, one line each. `require_livekit`: the LiveKit
    URL and key pair must be set (the worker needs them; unit tests and tools reading the
    other settings do not)."""
    reader = EnvReader(os.environ if env is None else env)
    settings = Settings(
        **_livekit(reader, require_livekit),
        **_provider(reader),
        **_capacity(reader),
        **_conversation(reader),
        **_process(reader),
    )
    reader.check()
    return settings


def _livekit(env: EnvReader, required: bool) -> dict[str, Any]:
    """Where the LiveKit server is and the key pair it accepts."""
    values = {name: env.text(name) for name in REQUIRED_LIVEKIT_VARS}
    missing = [name for name, value in values.items() if not value]
    if required and missing:
        env.problem(
            "missing required environment variable(s): " + ", ".join(missing) + " (LIVEKIT_URL "
            "is the server's ws:// or wss:// URL; LIVEKIT_API_KEY and LIVEKIT_API_SECRET a key "
            "pair it accepts)"
        )
    url = values["LIVEKIT_URL"]
    parsed = urlparse(url)
    if url and (parsed.scheme not in LIVEKIT_URL_SCHEMES or not parsed.netloc):
        env.problem(f"LIVEKIT_URL={url!r} must be a ws://, wss://, http:// or https:// URL")
    return {
        "livekit_url": url,
        "livekit_api_key": values["LIVEKIT_API_KEY"],
        "livekit_api_secret": values["LIVEKIT_API_SECRET"],
        "connect_retries": env.number("AGENT_CONNECT_RETRIES", Settings.connect_retries, 0, 1000),
    }


def _provider(env: EnvReader) -> dict[str, Any]:
    """Which speech and language models answer, and their OpenAI names."""
    defaults = Settings()
    provider = env.choice("AGENT_PROVIDER", defaults.provider, PROVIDERS)
    openai_key = env.text("OPENAI_API_KEY") or None
    if provider == "openai" and openai_key is None:
        env.problem("AGENT_PROVIDER=openai needs OPENAI_API_KEY")
    return {
        "agent_name": env.text("AGENT_NAME", defaults.agent_name),
        "provider": provider,
        "openai_api_key": openai_key,
        "openai_llm_model": env.text("OPENAI_LLM_MODEL", defaults.openai_llm_model),
        "openai_stt_model": env.text("OPENAI_STT_MODEL", defaults.openai_stt_model),
        "openai_tts_model": env.text("OPENAI_TTS_MODEL", defaults.openai_tts_model),
        "openai_tts_voice": env.text("OPENAI_TTS_VOICE", defaults.openai_tts_voice),
        "text_only": env.flag("AGENT_TEXT_ONLY"),
        "stt_threads": env.number("AGENT_STT_THREADS", defaults.stt_threads, 1, 64),
        "tts_threads": env.number("AGENT_TTS_THREADS", defaults.tts_threads, 1, 64),
    }


def _capacity(env: EnvReader) -> dict[str, Any]:
    """How many calls at once, how they run, how many processes are kept warm for them."""
    defaults = Settings()
    max_calls = env.number("AGENT_MAX_CALLS", defaults.max_calls, 1, 1000)
    return {
        "max_calls": max_calls,
        "num_idle_processes": env.number("AGENT_IDLE_PROCESSES", max_calls, 0, 1000),
        "job_executor": env.choice("AGENT_JOB_EXECUTOR", defaults.job_executor, JOB_EXECUTORS),
        "job_memory_warn_mb": env.number(
            "AGENT_JOB_MEMORY_WARN_MB", defaults.job_memory_warn_mb, 100, 1e6
        ),
    }


def _conversation(env: EnvReader) -> dict[str, Any]:
    """Turn taking and the caller's arrival."""
    defaults = Settings()
    silence = env.number("AGENT_SILENCE_SECONDS", defaults.silence_seconds, 0.2, 5.0)
    vad_silence = env.number("AGENT_VAD_SILENCE_SECONDS", defaults.vad_silence_seconds, 0.1, 5.0)
    return {
        "silence_seconds": silence,
        "vad_silence_seconds": min(silence, vad_silence),  # the VAD cannot wait past the turn
        "sync_transcription": env.flag("AGENT_SYNC_TRANSCRIPTION"),
        "caller_timeout_seconds": env.number(
            "AGENT_CALLER_TIMEOUT", defaults.caller_timeout_seconds, 1.0, 86_400.0
        ),
    }


def _process(env: EnvReader) -> dict[str, Any]:
    """The worker process: stopping, health endpoint."""
    defaults = Settings()
    return {
        "drain_timeout": env.number("AGENT_DRAIN_TIMEOUT", defaults.drain_timeout, 0, 86_400),
        "http_host": env.text("AGENT_HTTP_HOST", defaults.http_host),
        "http_port": env.number("AGENT_HTTP_PORT", defaults.http_port, 0, 65_535),
    }
