"""`token-server`: validate the configuration, then serve the endpoint with uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import uvicorn
from dotenv import load_dotenv

from token_server.config import ConfigError, DispatchMode, Settings, load_settings
from token_server.logs import configure_logging
from token_server.metrics import MULTIPROC_ENV


def _lock_name(settings: Settings) -> str:
    """Where each room's dispatch lock lives, for the start-up line (no password in it)."""
    if settings.dispatch_mode is not DispatchMode.API:
        return "none (this endpoint does not dispatch)"
    return settings.redis_url_for_logs or "in-process"


@contextlib.contextmanager
def _shared_metrics(settings: Settings) -> Iterator[None]:
    """With several workers, each scrape reaches one of them: they keep their metrics in a
    directory they share (prometheus_client's multiprocess mode), a fresh one per start unless
    PROMETHEUS_MULTIPROC_DIR names one."""
    if not settings.metrics or settings.workers == 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="token-server-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="token-server",
        description="LiveKit token endpoint for a voice-agent simulation platform.",
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to load (default: .env)")
    parser.add_argument("--host", help="overrides TOKEN_SERVER_HOST")
    parser.add_argument("--port", type=int, help="overrides TOKEN_SERVER_PORT")
    parser.add_argument("--workers", type=int, help="overrides TOKEN_SERVER_WORKERS")
    args = parser.parse_args(argv)

    if os.environ.get("TOKEN_SERVER_LOAD_DOTENV", "1") != "0":
        # Real environment variables win over the file, as in every twelve-factor deploy.
        load_dotenv(args.env_file, override=False)
    for flag, name in (
        (args.host, "TOKEN_SERVER_HOST"),
        (args.port, "TOKEN_SERVER_PORT"),
        (args.workers, "TOKEN_SERVER_WORKERS"),
    ):
        if flag is not None:
            os.environ[name] = str(flag)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print("token-server: cannot start, the configuration has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2

    configure_logging(settings.log_level)
    log = logging.getLogger("token_server")
    log.info(
        "serving POST http://%s:%d%s  livekit=%s public=%s dispatch=%s agent=%r auth=%s workers=%d "
        "dispatch_lock=%s cors=%s metrics=%s",
        settings.host,
        settings.port,
        settings.path,
        settings.livekit_url,
        settings.livekit_public_url,
        settings.dispatch_mode.value,
        settings.agent_name,
        f"{len(settings.api_keys)} key(s)" if settings.auth_required else "OFF (local/dev run)",
        settings.workers,
        _lock_name(settings),
        ",".join(settings.cors_origins) or "off",
        "/metrics (behind the API key)" if settings.metrics else "off",
    )
    with _shared_metrics(settings):
        uvicorn.run(
            "token_server.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=None,  # uvicorn's own lines go through the root logger's queue too
            access_log=False,  # request_log writes one structured line per request instead
            server_header=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
