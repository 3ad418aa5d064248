"""The config files the kit ships load as they are."""

from __future__ import annotations

from client_harness.config import load_config
from local_stack import REPO_ROOT


def test_the_shipped_local_config_loads() -> None:
    path = REPO_ROOT / "client_harness" / "configs" / "local.yaml"
    config = load_config(path, env={})
    assert config.generate_token_endpoint.startswith("http://127.0.0.1")
    assert config.livekit_agent_name and config.payload["agent_variant"] == "booking"
