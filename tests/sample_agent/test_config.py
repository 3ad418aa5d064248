"""The sample agent's pure logic: settings, metadata, provider selection, the CLI's checks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from livekit.agents import llm, stt, tts

import kit_settings
from sample_agent.config import Settings, SettingsError, load_settings
from sample_agent.metadata import parse_lenient, profile_from_job_metadata
from sample_agent.providers import build_pipeline
from sample_agent.responder import ScriptedLLM


def test_settings_defaults_need_no_keys() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.provider == "offline"
    assert settings.silence_seconds == 0.8
    assert settings.vad_silence_seconds <= settings.silence_seconds


def test_settings_read_every_variable() -> None:
    settings = load_settings(
        {
            "AGENT_NAME": "my-agent",
            "AGENT_IDLE_PROCESSES": "0",
            "AGENT_MAX_CALLS": "2",
            "AGENT_SILENCE_SECONDS": "1.0",
            "AGENT_VAD_SILENCE_SECONDS": "2.0",  # capped at the turn cut-off
            "AGENT_HTTP_PORT": "8081",
        }
    )
    assert settings.agent_name == "my-agent"
    assert settings.num_idle_processes == 0
    assert settings.max_calls == 2
    assert settings.silence_seconds == 1.0
    assert settings.vad_silence_seconds == 1.0
    assert settings.http_port == 8081


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENT_PROVIDER": "azure"}, "AGENT_PROVIDER='azure' must be one of offline, openai"),
        ({"AGENT_PROVIDER": "openai"}, "AGENT_PROVIDER=openai needs OPENAI_API_KEY"),
        ({"AGENT_MAX_CALLS": "0"}, "AGENT_MAX_CALLS=0 is out of range (1..1000)"),
        ({"AGENT_IDLE_PROCESSES": "two"}, "AGENT_IDLE_PROCESSES='two' is not an integer"),
        ({"AGENT_SILENCE_SECONDS": "9"}, "AGENT_SILENCE_SECONDS=9 is out of range (0.2..5)"),
        ({"AGENT_TEXT_ONLY": "maybe"}, "AGENT_TEXT_ONLY='maybe' must be one of 1/0, true/false"),
        ({"LIVEKIT_URL": "livekit:7880"}, "LIVEKIT_URL='livekit:7880' must be a ws://, wss://"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    assert [line for line in raised.value.problems if line.startswith(message)], (
        raised.value.problems
    )


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    env = {
        "AGENT_PROVIDER": "azure",
        "AGENT_MAX_CALLS": "0",
        "AGENT_TEXT_ONLY": "maybe",  # neither true nor false: a problem, not a silent "off"
        "AGENT_SYNC_TRANSCRIPTION": "yes",
        "LIVEKIT_URL": "ws://x",
    }
    with pytest.raises(SettingsError) as raised:
        load_settings(env, require_livekit=True)
    problems = raised.value.problems
    assert len(problems) == 4, problems
    assert str(raised.value).splitlines() == problems
    assert problems[0] == (
        "missing required environment variable(s): LIVEKIT_API_KEY, LIVEKIT_API_SECRET "
        "(LIVEKIT_URL is the server's ws:// or wss:// URL; LIVEKIT_API_KEY and "
        "LIVEKIT_API_SECRET a key pair it accepts)"
    )
    assert isinstance(raised.value, kit_settings.SettingsError)  # the kit's one error type
    # the same words mean true everywhere in the kit
    for word in ("1", "true", "Yes", " on "):
        assert load_settings({"AGENT_SYNC_TRANSCRIPTION": word}).sync_transcription


def test_livekit_connection_settings_are_read_once_and_the_secret_kept_out_of_reprs() -> None:
    settings = load_settings(
        {
            "LIVEKIT_URL": " wss://lk.example.com ",
            "LIVEKIT_API_KEY": "key",
            "LIVEKIT_API_SECRET": "very-secret-value",
            "AGENT_CONNECT_RETRIES": "3",
        },
        require_livekit=True,
    )
    assert (settings.livekit_url, settings.livekit_api_key) == ("wss://lk.example.com", "key")
    assert settings.livekit_api_secret == "very-secret-value"
    assert settings.connect_retries == 3
    assert "very-secret-value" not in repr(settings)
    assert "sk-hidden" not in repr(load_settings({"OPENAI_API_KEY": "sk-hidden"}))
    # only the worker needs them: reading the other settings does not
    assert load_settings({}).livekit_url == ""
    with pytest.raises(SettingsError, match="LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET"):
        load_settings({"LIVEKIT_API_KEY": " "}, require_livekit=True)


def _cli_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_"))}
    env["AGENT_LOAD_DOTENV"] = "0"
    env.update(overrides)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["start", "dev"])
def test_cli_without_livekit_settings_exits_non_zero_naming_each_variable(command: str) -> None:
    env = _cli_env(LIVEKIT_API_KEY="devkey")
    proc = subprocess.run(
        [sys.executable, "-m", "sample_agent", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "missing required environment variable(s): LIVEKIT_URL, LIVEKIT_API_SECRET" in (
        proc.stderr
    )


def test_cli_rejects_bad_settings_before_connecting() -> None:
    env = _cli_env(AGENT_PROVIDER="openai", AGENT_MAX_CALLS="many", OPENAI_API_KEY="")
    env.update(LIVEKIT_URL="ws://127.0.0.1:9", LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s")
    proc = subprocess.run(
        [sys.executable, "-m", "sample_agent", "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "  - AGENT_PROVIDER=openai needs OPENAI_API_KEY\n" in proc.stderr
    assert "  - AGENT_MAX_CALLS='many' is not an integer\n" in proc.stderr


@pytest.mark.parametrize("command", ["start", "dev"])
def test_cli_exits_non_zero_naming_the_url_when_the_server_cannot_be_reached(
    command: str,
) -> None:
    """The framework alone logs "worker failed" and exits 0 once it gives up connecting."""
    url = f"ws://127.0.0.1:{_free_port()}"  # nothing listens there
    env = _cli_env(
        LIVEKIT_URL=url,
        LIVEKIT_API_KEY="k",
        LIVEKIT_API_SECRET="s" * 32,
        AGENT_CONNECT_RETRIES="1",  # one retry, without the framework's backoff of minutes
        AGENT_TEXT_ONLY="1",
        AGENT_IDLE_PROCESSES="0",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sample_agent", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"(LiveKit server {url})" in proc.stderr
    assert "failed to connect to livekit after 1 attempts" in proc.stderr
    assert "DeprecationWarning" not in proc.stderr


# --- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fmt", "fields", "text"),
    [
        ('{"persona": "ava"}', "json", {"persona": "ava"}, ""),
        ("{'persona': 'ava', 'n': 1}", "python", {"persona": "ava", "n": 1}, ""),
        ('"support"', "text", {}, "support"),
        ("just some words", "text", {}, "just some words"),
        ("{'unterminated': ", "text", {}, "{'unterminated':"),
        ("[1, 2]", "text", {}, "[1, 2]"),
        ("  ", "empty", {}, ""),
        (None, "empty", {}, ""),
    ],
)
def test_parse_lenient(raw: str | None, fmt: str, fields: dict[str, object], text: str) -> None:
    parsed = parse_lenient(raw)
    assert (parsed.format, parsed.fields, parsed.text) == (fmt, fields, text)


def test_envelope_precedence_configured_then_requested_then_custom() -> None:
    profile = profile_from_job_metadata(
        json.dumps(
            {
                "room_name": "r1",
                "participant_name": "simulated_user",
                "agent_metadata": "{'persona': 'ava', 'agent_variant': 'sales', 'language': 'en'}",
                "requested_agent_metadata": '{"persona": "max", "tone": "calm"}',
                "custom": {"agent_variant": "support", "language": "de"},
            }
        )
    )
    assert (profile.persona, profile.variant, profile.language) == ("max", "support", "de")
    assert (profile.room_name, profile.participant_name) == ("r1", "simulated_user")
    assert profile.extra == {"tone": "calm"}


def test_foreign_json_metadata_is_read_as_agent_settings() -> None:
    profile = profile_from_job_metadata('{"variant": "Support", "business": "Globex"}')
    assert (profile.variant, profile.business_name, profile.room_name) == (
        "support",
        "Globex",
        None,
    )


def test_plain_text_sentences_are_kept_as_a_note_not_a_variant() -> None:
    profile = profile_from_job_metadata(json.dumps({"agent_metadata": "be brief", "custom": {}}))
    assert (profile.variant, profile.note) == (None, "be brief")


# --- provider selection -----------------------------------------------------------------------


def test_offline_pipeline_needs_the_prewarmed_models() -> None:
    with pytest.raises(RuntimeError, match="offline models were not loaded"):
        build_pipeline(Settings(), profile_from_job_metadata(""), None)


async def test_openai_provider_swaps_all_three_plugins() -> None:
    from livekit.plugins import openai

    settings = load_settings(
        {"AGENT_PROVIDER": "openai", "OPENAI_API_KEY": "sk-not-used", "OPENAI_TTS_VOICE": "ash"}
    )
    pipeline = build_pipeline(settings, profile_from_job_metadata(""), None)
    assert isinstance(pipeline.stt, openai.STT) and isinstance(pipeline.stt, stt.STT)
    assert isinstance(pipeline.llm, openai.LLM) and isinstance(pipeline.llm, llm.LLM)
    assert isinstance(pipeline.tts, openai.TTS) and isinstance(pipeline.tts, tts.TTS)
    assert not isinstance(pipeline.llm, ScriptedLLM)
    assert pipeline.llm.model == settings.openai_llm_model
    await pipeline.llm.aclose()
    await pipeline.stt.aclose()
    await pipeline.tts.aclose()


def test_job_executor_and_text_only_settings() -> None:
    from livekit.agents import JobExecutorType

    from sample_agent.agent import server_options

    assert load_settings({}).job_executor == "process"  # the default stays one process per call
    # what the AgentServer (and so its job pool) is built with
    assert server_options(load_settings({}))["job_executor_type"] is JobExecutorType.PROCESS
    threaded = load_settings({"AGENT_JOB_EXECUTOR": " Thread "})
    assert threaded.job_executor == "thread"
    assert server_options(threaded)["job_executor_type"] is JobExecutorType.THREAD
    with pytest.raises(SettingsError, match="AGENT_JOB_EXECUTOR='fork' must be one of process"):
        load_settings({"AGENT_JOB_EXECUTOR": "fork"})
    # its companion for text load runs: no audio either way, off unless asked for
    assert not load_settings({}).text_only
    assert load_settings({"AGENT_TEXT_ONLY": "1"}).text_only


def test_script_choice_from_variant_alias_or_persona() -> None:
    from sample_agent.metadata import CallProfile
    from sample_agent.scripts import agent_name, script_for

    assert script_for(CallProfile(variant="helpdesk")).name == "support"
    assert script_for(CallProfile(variant="unknown")).name == "restaurant"
    assert script_for(CallProfile(persona="support-agent")).name == "support"
    assert script_for(CallProfile(persona="support-agent", variant="sales")).name == "sales"
    assert agent_name(CallProfile(persona="ava")) == "Ava"
    assert agent_name(CallProfile(persona="support-agent")) == "Sam"


async def test_text_only_pipeline_is_the_llm_alone() -> None:
    """A text-only agent neither hears nor speaks: no STT or TTS is built, no model is needed."""
    settings = load_settings({"AGENT_TEXT_ONLY": "1"})
    pipeline = build_pipeline(settings, profile_from_job_metadata(""), None)
    assert pipeline.stt is None and pipeline.tts is None
    assert isinstance(pipeline.llm, ScriptedLLM)
    await pipeline.llm.aclose()


def test_a_local_env_file_fills_gaps_without_touching_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dotenv

    from sample_agent.__main__ import _environment

    from_file = {"LIVEKIT_URL": "ws://from-file:7880", "AGENT_NAME": "file-agent", "EMPTY": None}
    monkeypatch.setattr(dotenv, "dotenv_values", lambda *a, **k: dict(from_file))
    monkeypatch.setenv("AGENT_NAME", "env-agent")
    monkeypatch.delenv("LIVEKIT_URL", raising=False)
    monkeypatch.delenv("AGENT_LOAD_DOTENV", raising=False)
    env = _environment()
    assert env["LIVEKIT_URL"] == "ws://from-file:7880"  # a gap, filled from the file
    assert env["AGENT_NAME"] == "env-agent"  # real environment variables win
    assert "LIVEKIT_URL" not in os.environ and "EMPTY" not in env
    monkeypatch.setenv("AGENT_LOAD_DOTENV", "off")
    assert "LIVEKIT_URL" not in _environment()
