"""docker-compose.yml, Dockerfile and .env.example agree with what the code reads.

No container engine runs here, so these check what can be checked without one: the files parse,
every variable they set is one the code reads, build targets exist, images are pinned.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from local_stack import LIVEKIT_SERVER_VERSION, REPO_ROOT
from sample_agent import config as agent_config
from token_server import config as token_config


class RecordingEnv(dict[str, str]):
    """A mapping that remembers every key a settings loader asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("settings loaders must ask for variables by name")


def names_read(loader: Callable[[RecordingEnv], Any], base: dict[str, str]) -> set[str]:
    env = RecordingEnv(base)
    loader(env)
    return env.asked


TOKEN_BASE = {
    "LIVEKIT_URL": "ws://livekit:7880",
    "LIVEKIT_API_KEY": "k",
    "LIVEKIT_API_SECRET": "s" * 32,
    "AGENT_NAME": "a",
    "TOKEN_SERVER_API_KEYS": "x",
}
TOKEN_VARS = names_read(token_config.load_settings, TOKEN_BASE)
AGENT_VARS = names_read(agent_config.load_settings, {}) | set(agent_config.REQUIRED_LIVEKIT_VARS)
BASE_SERVICES = {"livekit", "redis", "token-server", "sample-agent"}
CLUSTER_SERVICES = {"livekit-2", "sample-agent-2"}  # `docker compose --profile cluster up`
AGENTS = ("sample-agent", "sample-agent-2")
NODES = ("livekit", "livekit-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


def test_loaders_read_the_documented_core_variables() -> None:
    assert {
        "LIVEKIT_URL",
        "LIVEKIT_PUBLIC_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "AGENT_NAME",
        "AGENT_METADATA",
        "DISPATCH_MODE",
        "TOKEN_SERVER_API_KEYS",
        "TOKEN_TTL_SECONDS",
    } <= TOKEN_VARS
    assert {"AGENT_NAME", "LIVEKIT_URL"} <= AGENT_VARS


def test_compose_services_and_pinned_livekit(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {name for name, s in services.items() if "profiles" not in s} == BASE_SERVICES
    assert {n for n, s in services.items() if s.get("profiles") == ["cluster"]} == CLUSTER_SERVICES
    for node in NODES:
        assert services[node]["image"] == f"livekit/livekit-server:{LIVEKIT_SERVER_VERSION}"
    livekit_cfg = yaml.safe_load((REPO_ROOT / "livekit.yaml").read_text())
    assert livekit_cfg["redis"]["address"].split(":")[0] == "redis"
    assert livekit_cfg["port"] == 7880


def _published(service: dict[str, Any]) -> dict[str, str]:
    """container port (with /udp when UDP) -> host port."""
    found = {}
    for mapping in service["ports"]:
        host, container = mapping.split(":")
        proto = "/udp" if container.endswith("/udp") else ""
        found[container] = host + proto
    return found


def test_compose_cluster_nodes_share_config_keys_and_redis_on_distinct_ports(
    compose: dict[str, Any],
) -> None:
    """Every node runs livekit.yaml (its redis: the compose redis) with the same key pair; each
    node's media ports are published on the ports it advertises (the ones ICE hands callers),
    and no two nodes publish the same host port."""
    services = compose["services"]
    livekit_cfg = yaml.safe_load((REPO_ROOT / "livekit.yaml").read_text())
    first, second = (services[n] for n in NODES)
    for key in ("command", "volumes", "depends_on", "healthcheck"):
        assert first[key] == second[key], key
    assert first["environment"]["LIVEKIT_KEYS"] == second["environment"]["LIVEKIT_KEYS"]
    assert "redis" in first["depends_on"]
    rtc = livekit_cfg["rtc"]
    advertised = {
        "livekit": (rtc["tcp_port"], rtc["udp_port"]),
        "livekit-2": (
            int(second["environment"]["LIVEKIT_RTC_TCP_PORT"]),
            int(second["environment"]["UDP_PORT"]),
        ),
    }
    hosts: list[str] = []
    for node in NODES:
        tcp, udp = advertised[node]
        ports = _published(services[node])
        assert ports[f"{tcp}"] == f"{tcp}" and ports[f"{udp}/udp"] == f"{udp}/udp", node
        assert str(livekit_cfg["port"]) in ports, node  # HTTP/WebSocket published
        hosts += ports.values()
    assert len(hosts) == len(set(hosts)), hosts


def test_compose_each_agent_worker_registers_with_its_own_node(compose: dict[str, Any]) -> None:
    services = compose["services"]
    port = yaml.safe_load((REPO_ROOT / "livekit.yaml").read_text())["port"]
    for agent, node in zip(AGENTS, NODES, strict=True):
        assert services[agent]["environment"]["LIVEKIT_URL"] == f"ws://{node}:{port}"
        assert node in services[agent]["depends_on"]
        assert services[agent]["build"] == services["sample-agent"]["build"]
    env1, env2 = (dict(services[a]["environment"]) for a in AGENTS)
    env1.pop("LIVEKIT_URL"), env2.pop("LIVEKIT_URL")
    assert env1 == env2  # the same worker, on another node


def test_compose_token_server_coordinates_through_the_shared_redis(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    livekit_cfg = yaml.safe_load((REPO_ROOT / "livekit.yaml").read_text())
    assert "REDIS_URL" in TOKEN_VARS  # the per-room dispatch lock's Redis
    redis_url = services["token-server"]["environment"]["REDIS_URL"]
    assert redis_url == f"redis://{livekit_cfg['redis']['address']}"  # the nodes' own Redis
    assert "redis" in services["token-server"]["depends_on"]


@pytest.mark.parametrize(
    ("service", "known"),
    [
        ("token-server", TOKEN_VARS),
        ("sample-agent", AGENT_VARS),
        ("sample-agent-2", AGENT_VARS),
    ],
)
def test_compose_environment_names_are_read_by_the_code(
    compose: dict[str, Any], service: str, known: set[str]
) -> None:
    env = compose["services"][service]["environment"]
    unknown = sorted(set(env) - known - {"OPENAI_API_KEY"})
    assert unknown == [], f"{service} sets variables its code never reads: {unknown}"
    assert {"LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "AGENT_NAME"} <= set(env)


def test_compose_agent_name_matches_between_dispatcher_and_worker(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for agent in AGENTS:
        assert (
            services["token-server"]["environment"]["AGENT_NAME"]
            == services[agent]["environment"]["AGENT_NAME"]
        )


def test_build_targets_exist_and_run_our_console_scripts(
    compose: dict[str, Any], dockerfile: str
) -> None:
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    for service in ("token-server", *AGENTS):
        assert compose["services"][service]["build"]["target"] in targets
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = re.findall(r'^CMD \["([^"]+)"', dockerfile, re.M)
    assert commands and all(c in scripts for c in commands)
    assert "USER app" in dockerfile  # non-root
    assert dockerfile.count("HEALTHCHECK") == 2


def test_token_server_port_is_consistent(compose: dict[str, Any], dockerfile: str) -> None:
    service = compose["services"]["token-server"]
    port = service["environment"]["TOKEN_SERVER_PORT"]
    assert f"{port}:{port}" in service["ports"]
    assert f"EXPOSE {port}" in dockerfile


def test_env_example_documents_only_variables_the_code_reads() -> None:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    names = {ln.split("=", 1)[0] for ln in lines if re.match(r"^[A-Z][A-Z0-9_]*=", ln)}
    unknown = sorted(names - TOKEN_VARS - AGENT_VARS - {"OPENAI_API_KEY"})
    assert unknown == [], f".env.example documents variables nothing reads: {unknown}"
    missing = sorted((TOKEN_VARS | AGENT_VARS) - names - {"TOKEN_SERVER_LOAD_DOTENV"})
    assert missing == [], f".env.example does not document: {missing}"


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored
    assert Path(REPO_ROOT / "uv.lock").exists()
