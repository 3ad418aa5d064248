"""Start-up validation: every problem reported at once, one line each; no start without auth."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kit_settings import SettingsError
from kit_settings.env import FALSE_WORDS, TRUE_WORDS
from token_server.config import ConfigError, DispatchMode, load_settings, redact_url

GOOD = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": "key",
    "LIVEKIT_API_SECRET": "secret-that-is-long-enough-for-hs256-xx",
    "AGENT_NAME": "voice",
    "TOKEN_SERVER_API_KEYS": "k1, k2 ,",
}


def test_good_settings_and_defaults() -> None:
    s = load_settings(GOOD)
    assert s.dispatch_mode is DispatchMode.API
    assert s.livekit_public_url == GOOD["LIVEKIT_URL"]
    assert s.api_keys == ("k1", "k2")
    assert s.auth_required
    assert s.path == "/livekit/token"
    assert s.token_ttl_seconds == 900
    assert s.agent_allowed("voice") and not s.agent_allowed("other")
    assert GOOD["LIVEKIT_API_SECRET"] not in repr(s)
    assert "k1" not in repr(s)


def test_public_url_and_allowed_agents() -> None:
    s = load_settings(
        {**GOOD, "LIVEKIT_PUBLIC_URL": "wss://lk.example.com", "ALLOWED_AGENT_NAMES": "a, b"}
    )
    assert s.livekit_public_url == "wss://lk.example.com"
    assert s.agent_allowed("a") and s.agent_allowed("b") and s.agent_allowed("voice")


def test_every_problem_is_listed() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                "LIVEKIT_URL": "ftp://x",
                "LIVEKIT_PUBLIC_URL": "https://not-ws",
                "DISPATCH_MODE": "magic",
                "TOKEN_TTL_SECONDS": "soon",
                "TOKEN_SERVER_PORT": "70000",
                "TOKEN_SERVER_PATH": "token",
                "TOKEN_SERVER_ALLOW_NO_AUTH": "maybe",
            }
        )
    text = "\n".join(err.value.problems)
    for needle in (
        "LIVEKIT_URL='ftp://x'",
        "LIVEKIT_PUBLIC_URL",
        "LIVEKIT_API_KEY is not set",
        "LIVEKIT_API_SECRET is not set",
        "DISPATCH_MODE='magic'",
        "AGENT_NAME is not set",
        "TOKEN_SERVER_API_KEYS is empty",
        "TOKEN_TTL_SECONDS='soon'",
        "TOKEN_SERVER_PORT=70000",
        "TOKEN_SERVER_PATH='token'",
        "TOKEN_SERVER_ALLOW_NO_AUTH='maybe'",
    ):
        assert needle in text
    assert len(err.value.problems) == 11


def test_no_keys_refused_unless_told_it_is_a_local_run() -> None:
    env = {**GOOD, "TOKEN_SERVER_API_KEYS": ""}
    with pytest.raises(ConfigError, match="TOKEN_SERVER_API_KEYS is empty"):
        load_settings(env)
    assert not load_settings({**env, "TOKEN_SERVER_ALLOW_NO_AUTH": "1"}).auth_required


def test_dispatch_none_needs_no_agent_name() -> None:
    s = load_settings({**GOOD, "AGENT_NAME": "", "DISPATCH_MODE": "none"})
    assert s.dispatch_mode is DispatchMode.NONE


def test_cli_refuses_to_start_and_names_each_problem() -> None:
    env = {"PATH": "/usr/bin:/bin", "TOKEN_SERVER_LOAD_DOTENV": "0", "LIVEKIT_API_SECRET": "s3cr3t"}
    proc = subprocess.run(
        [sys.executable, "-m", "token_server"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "LIVEKIT_URL is not set" in proc.stderr
    assert "LIVEKIT_API_KEY is not set" in proc.stderr
    assert "TOKEN_SERVER_API_KEYS is empty" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cr3t" not in proc.stderr + proc.stdout


def test_dispatch_follow_defaults_and_strict_mode() -> None:
    s = load_settings(GOOD)
    assert s.dispatch_retry and not s.dispatch_strict
    assert s.dispatch_retry_deadline_seconds == 120
    s = load_settings({**GOOD, "DISPATCH_RETRY": "0"})
    assert not s.dispatch_retry
    s = load_settings({**GOOD, "DISPATCH_STRICT": "1", "DISPATCH_STRICT_TIMEOUT_SECONDS": "3"})
    assert s.dispatch_strict and s.dispatch_strict_timeout_seconds == 3


def test_strict_mode_needs_api_dispatch_that_is_followed() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                **GOOD,
                "DISPATCH_MODE": "token",
                "DISPATCH_STRICT": "1",
                "DISPATCH_RETRY": "maybe",
                "DISPATCH_RETRY_DEADLINE_SECONDS": "0",
            }
        )
    problems = "\n".join(err.value.problems)
    assert "DISPATCH_STRICT=1 needs DISPATCH_MODE=api" in problems
    assert "DISPATCH_RETRY='maybe'" in problems
    assert "DISPATCH_RETRY_DEADLINE_SECONDS=0 is out of range" in problems


def test_several_problems_come_back_one_per_line_each_naming_its_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                **GOOD,
                "LIVEKIT_API_SECRET": "",
                "DISPATCH_TIMEOUT_SECONDS": "fast",
                "DISPATCH_STRICT": "sometimes",
                "TOKEN_SERVER_WORKERS": "0",
                "TOKEN_SERVER_LOG_LEVEL": "loud",
            }
        )
    problems = err.value.problems
    assert str(err.value).splitlines() == problems  # one line each, nothing else
    assert [p.split("=")[0].split(" ")[0] for p in problems] == [
        "LIVEKIT_API_SECRET",
        "DISPATCH_TIMEOUT_SECONDS",
        "DISPATCH_STRICT",
        "TOKEN_SERVER_WORKERS",
        "TOKEN_SERVER_LOG_LEVEL",
    ]
    assert isinstance(err.value, SettingsError)  # the kit's one settings error


@pytest.mark.parametrize(
    "name", ["DISPATCH_RETRY", "DISPATCH_STRICT", "TOKEN_SERVER_ALLOW_NO_AUTH"]
)
@pytest.mark.parametrize("word", ["maybe", "2", "enabled"])
def test_a_flag_that_is_neither_true_nor_false_is_a_problem(name: str, word: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**GOOD, name: word})
    assert err.value.problems == [f"{name}={word!r} must be one of 1/0, true/false, yes/no, on/off"]


def test_dispatch_retry_maybe_is_a_problem_not_silently_off() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**GOOD, "DISPATCH_RETRY": "maybe"})
    assert err.value.problems == [
        "DISPATCH_RETRY='maybe' must be one of 1/0, true/false, yes/no, on/off"
    ]
    assert load_settings({**GOOD, "DISPATCH_RETRY": ""}).dispatch_retry  # blank: the default


@pytest.mark.parametrize(
    ("word", "value"),
    [(w, True) for w in sorted(TRUE_WORDS)]
    + [(w, False) for w in sorted(FALSE_WORDS)]
    + [("ON", True), (" Yes ", True), ("FALSE", False), ("Off", False)],
)
def test_flags_take_the_same_words_as_every_part_of_the_kit(word: str, value: bool) -> None:
    s = load_settings(
        {
            **GOOD,
            "DISPATCH_RETRY": word,
            "DISPATCH_STRICT": word,
            "TOKEN_SERVER_ALLOW_NO_AUTH": word,
        }
    )
    assert (s.dispatch_retry, s.dispatch_strict, s.allow_no_auth) == (value, value, value)


# --- REDIS_URL: the lock several replicas share (issue 11) -------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "redis://redis:6379/0",
        "rediss://:pw@redis.example.com:6380/2",
        "redis://user:pw@redis/",
        "redis://redis?health_check_interval=5",
    ],
)
def test_redis_url_accepted(url: str) -> None:
    assert load_settings({**GOOD, "REDIS_URL": url}).redis_url == url


def test_no_redis_url_means_the_in_process_lock() -> None:
    s = load_settings(GOOD)
    assert s.redis_url == "" and s.redis_url_for_logs == ""


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://redis:6379", "must be a redis:// or rediss:// URL"),
        ("unix:///run/redis.sock", "must be a redis:// or rediss:// URL"),
        ("redis:6379", "must be a redis:// or rediss:// URL"),
        ("redis://redis:port/0", "has an invalid port"),
        ("redis://redis:99999", "has an invalid port"),
        ("redis://:pw@:6379", "has no host"),
        ("redis://redis:6379/cache", "must be a database number"),
        ("redis://redis:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ],
)
def test_a_bad_redis_url_is_a_problem_naming_it(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**GOOD, "REDIS_URL": url})
    [problem] = err.value.problems
    assert problem.startswith("REDIS_URL=") and why in problem


def test_the_redis_password_is_never_shown() -> None:
    password = "hunter2-very-secret"
    s = load_settings({**GOOD, "REDIS_URL": f"redis://default:{password}@redis:6379/0"})
    assert password not in repr(s)
    assert s.redis_url_for_logs == "redis://default:***@redis:6379/0"
    with pytest.raises(ConfigError) as err:  # nor in a problem about the URL
        load_settings({**GOOD, "REDIS_URL": f"redis://:{password}@redis:6379/cache"})
    assert password not in str(err.value)
    assert "redis://:***@redis:6379/cache" in str(err.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://user@redis:6379", "redis://user@redis:6379"),
        ("rediss://:p%40ss@h:1/0", "rediss://:***@h:1/0"),
        ("redis://u:p@h", "redis://u:***@h"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- browser callers (CORS) and metrics ---------------------------------------------------------


def test_cors_is_off_and_metrics_on_by_default() -> None:
    settings = load_settings(GOOD)
    assert settings.cors_origins == ()
    assert settings.metrics is True


def test_cors_origins_are_a_list() -> None:
    settings = load_settings(
        {
            **GOOD,
            "TOKEN_SERVER_CORS_ORIGINS": " https://app.example.com , http://localhost:5173,",
            "TOKEN_SERVER_METRICS": "off",
        }
    )
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:5173")
    assert settings.metrics is False
    assert load_settings({**GOOD, "TOKEN_SERVER_CORS_ORIGINS": "*"}).cors_origins == ("*",)


@pytest.mark.parametrize(
    ("origins", "why"),
    [
        ("https://app.example.com/", "is not an origin"),
        ("https://app.example.com/login", "is not an origin"),
        ("app.example.com", "is not an origin"),
        ("ftp://app.example.com", "is not an origin"),
        ("https://user@app.example.com", "is not an origin"),
        ("https://app.example.com:port", "is not an origin"),
        ("https://App.Example.com", "must be lower-case"),
        ("*,https://app.example.com", "list no others beside it"),
    ],
)
def test_a_cors_origin_the_browser_would_never_send_is_a_problem(origins: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**GOOD, "TOKEN_SERVER_CORS_ORIGINS": origins})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("TOKEN_SERVER_CORS_ORIGINS")
    assert why in caught.value.problems[0]


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json", "/healthz"])
def test_the_token_path_cannot_take_another_route(path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**GOOD, "TOKEN_SERVER_PATH": path})
    assert caught.value.problems == [
        f"TOKEN_SERVER_PATH={path!r} clashes with the route already at {path}"
    ]
