"""Config sources, precedence and every validation rule, each problem named by its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client_harness.config import ConfigError, load_config, validate
from kit_settings import SettingsError
from kit_settings.env import FALSE_WORDS, TRUE_WORDS

GOOD = {
    "generate_token_endpoint": "https://api.example.com/livekit/token",
    "livekit_url": "wss://lk.example.com",
}


def problems_of(**fields: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={**GOOD, **fields})
    return info.value.problems


def one_problem(**fields: object) -> str:
    problems = problems_of(**fields)
    assert len(problems) == 1, problems
    return problems[0]


def test_minimal_config_is_valid() -> None:
    config = load_config(env={}, overrides=GOOD)
    assert config.generate_token_endpoint == GOOD["generate_token_endpoint"]
    assert config.headers == {} and config.payload == {}


def test_all_platform_fields_round_trip() -> None:
    config = load_config(
        env={},
        overrides={
            **GOOD,
            "generate_token_headers": '{"Authorization": "Bearer k"}',
            "livekit_agent_name": "voice-assistant",
            "livekit_agent_metadata": "{'role': 'assistant'}",
            "token_request_payload": '{"agent_variant": "sales", "language": "en"}',
        },
    )
    assert config.headers == {"Authorization": "Bearer k"}
    assert config.payload == {"agent_variant": "sales", "language": "en"}
    assert config.livekit_agent_metadata == "{'role': 'assistant'}"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            env={}, overrides={"generate_token_headers": "{", "token_request_payload": "[]"}
        )
    fields = sorted(p.split(":")[0] for p in info.value.problems)
    assert fields == [
        "generate_token_endpoint",
        "generate_token_headers",
        "livekit_url",
        "token_request_payload",
    ]


def test_insecure_maybe_is_a_problem_naming_the_field_not_silently_off() -> None:
    problem = one_problem(insecure="maybe")
    assert problem.startswith("insecure: 'maybe' is not a boolean")
    assert "1/0, true/false, yes/no, on/off" in problem


def test_insecure_maybe_from_the_environment_and_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HARNESS_INSECURE": "maybe"}, overrides=GOOD)
    assert [p.split(":")[0] for p in info.value.problems] == ["insecure"]
    path = tmp_path / "c.yaml"
    path.write_text("insecure: maybe\nlivekit_url: ws://10.0.0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, overrides={"generate_token_endpoint": "http://10.0.0.5/t"})
    # The word is a problem, and insecure keeps its default (off), so the plain URLs are too.
    assert [p.split(":")[0] for p in info.value.problems] == [
        "insecure",
        "generate_token_endpoint",
        "livekit_url",
    ]


@pytest.mark.parametrize(
    ("word", "value"),
    [(w, True) for w in sorted(TRUE_WORDS)]
    + [(w, False) for w in sorted(FALSE_WORDS)]
    + [("ON", True), (" Yes ", True), ("FALSE", False), ("", False)],
)
def test_insecure_takes_the_same_words_as_every_part_of_the_kit(word: str, value: bool) -> None:
    config = load_config(env={"HARNESS_INSECURE": word}, overrides=GOOD)
    assert config.insecure is value


def test_config_error_is_the_kits_settings_error_with_its_own_message() -> None:
    with pytest.raises(SettingsError) as info:
        load_config(env={}, overrides={**GOOD, "insecure": "2", "agent_join_timeout": -1})
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == "invalid configuration:\n  " + "\n  ".join(info.value.problems)
    assert [p.split(":")[0] for p in info.value.problems] == ["insecure", "agent_join_timeout"]


def test_endpoint_must_be_https() -> None:
    problem = one_problem(generate_token_endpoint="http://api.example.com/token")
    assert problem.startswith("generate_token_endpoint:") and "https" in problem


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.5"])
def test_http_allowed_for_loopback(host: str) -> None:
    config = load_config(
        env={},
        overrides={
            **GOOD,
            "generate_token_endpoint": f"http://{host}:8888/t",
            "livekit_url": f"ws://{host}:7880",
        },
    )
    assert config.generate_token_endpoint.startswith("http://")


def test_http_and_ws_allowed_with_insecure_flag() -> None:
    config = load_config(
        env={},
        overrides={
            "generate_token_endpoint": "http://10.0.0.5/t",
            "livekit_url": "ws://10.0.0.5",
            "insecure": True,
        },
    )
    assert config.insecure


@pytest.mark.parametrize("url", ["ftp://x/y", "not a url", "https://"])
def test_endpoint_must_be_a_url(url: str) -> None:
    assert one_problem(generate_token_endpoint=url).startswith("generate_token_endpoint:")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https://lk.example.com", "wss://lk.example.com"),
        ("ws://lk.example.com", "wss"),
        ("lk.example.com", "WebSocket"),
    ],
)
def test_livekit_url_must_be_wss(url: str, needle: str) -> None:
    problem = one_problem(livekit_url=url)
    assert problem.startswith("livekit_url:") and needle in problem


def test_required_fields() -> None:
    problems = problems_of(generate_token_endpoint="", livekit_url="")
    assert [p.split(":")[0] for p in problems] == ["generate_token_endpoint", "livekit_url"]


def test_sandbox_mode_needs_no_endpoint() -> None:
    config = load_config(
        env={}, overrides={"sandbox_id": "my-sandbox-x1", "livekit_url": GOOD["livekit_url"]}
    )
    assert config.sandbox_url == "https://cloud-api.livekit.io/api/v2/sandbox/connection-details"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "JSON object"),
        ('"x"', "JSON object"),
        ('{"X-Key": 5}', "must be a string"),
        ('{"X": "a\\nb"}', "line break"),
    ],
)
def test_headers_must_be_a_json_object_of_strings(value: str, needle: str) -> None:
    problem = one_problem(generate_token_headers=value)
    assert problem.startswith("generate_token_headers:") and needle in problem


@pytest.mark.parametrize(
    ("value", "needle"),
    [("{x", "not valid JSON"), ("[1]", "JSON object"), ('{"room_name": "r"}', "room_name")],
)
def test_payload_must_be_a_json_object(value: str, needle: str) -> None:
    problem = one_problem(token_request_payload=value)
    assert problem.startswith("token_request_payload:") and needle in problem


def test_timeouts_must_be_positive() -> None:
    assert one_problem(agent_join_timeout=0).startswith("agent_join_timeout:")
    assert one_problem(request_timeout="soon").startswith("request_timeout:")


def test_api_key_needs_secret() -> None:
    assert "livekit_api_key" in one_problem(livekit_api_key="k")


def test_yaml_file_env_and_flags_precedence(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "generate_token_endpoint: https://file.example.com/t\n"
        "livekit_url: wss://file.example.com\n"
        "livekit_agent_name: from-file\n"
        "generate_token_headers:\n  Authorization: Bearer ${MY_KEY}\n"
        'token_request_payload: \'{"language": "en"}\'\n'
    )
    env = {
        "MY_KEY": "s3cret",
        "HARNESS_LIVEKIT_AGENT_NAME": "from-env",
        "HARNESS_LIVEKIT_URL": "wss://env.example.com",
    }
    config = load_config(
        path, env=env, overrides={"livekit_url": "wss://flag.example.com", "sandbox_id": None}
    )
    assert config.generate_token_endpoint == "https://file.example.com/t"
    assert config.livekit_agent_name == "from-env"
    assert config.livekit_url == "wss://flag.example.com"
    assert config.headers == {"Authorization": "Bearer s3cret"}
    assert config.payload == {"language": "en"}
    assert "s3cret" not in json.dumps(config.redacted())


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**GOOD, "agent_join_timeout": 5}))
    assert load_config(path, env={}).agent_join_timeout == 5.0


def test_file_problems_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "generate_token_endpont: https://typo.example.com\n"
        "livekit_url: wss://x.example.com\n"
        'generate_token_headers: \'{"A": "${UNSET_VAR_XYZ}"}\'\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text = "\n".join(info.value.problems)
    assert "generate_token_endpont: unknown field" in text
    assert "UNSET_VAR_XYZ" in text
    assert "generate_token_endpoint: required" in text


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={}, overrides=GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, env={}, overrides=GOOD)


def test_validate_accepts_defaults_plus_required() -> None:
    assert validate(load_config(env={}, overrides=GOOD)) == []


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--count", "0"], "--count: must be at least 1, got 0"),
        (["--concurrency", "-3"], "--concurrency: must be at least 1, got -3"),
        (["--ramp-seconds", "-1"], "--ramp-seconds: must be 0 or more, got -1"),
        (["--ramp-seconds", "nan"], "--ramp-seconds: must be 0 or more, got nan"),
    ],
)
def test_run_flags_out_of_range_are_refused(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from client_harness.commands.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", *flags])
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err


def test_run_flags_in_range_are_kept() -> None:
    from client_harness.commands.cli import build_parser

    args = build_parser().parse_args(["run", "--count", "50", "--ramp-seconds", "12.5"])
    assert (args.count, args.concurrency, args.ramp_seconds) == (50, 1, 12.5)
