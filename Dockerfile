# syntax=docker/dockerfile:1.7
# One image recipe, two targets:
#   docker build --target token-server -t coval-kit/token-server .
#   docker build --target sample-agent -t coval-kit/sample-agent .
# uv installs exactly what uv.lock pins; the agent's speech models ship inside its wheels and are
# loaded once at build time, so a container never fetches weights at run time.

ARG PYTHON_VERSION=3.11
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PATH=/app/.venv/bin:$PATH
RUN groupadd --system app && useradd --system --gid app --home-dir /app --create-home app
WORKDIR /app

# ---- token server: only the base dependencies -------------------------------------------------
FROM base AS token-server
COPY --chown=app:app pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY --chown=app:app kit_settings ./kit_settings
COPY --chown=app:app token_server ./token_server
COPY --chown=app:app offline_speech ./offline_speech
COPY --chown=app:app sample_agent ./sample_agent
COPY --chown=app:app client_harness ./client_harness
COPY --chown=app:app local_stack ./local_stack
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev
USER app
ENV TOKEN_SERVER_HOST=0.0.0.0 TOKEN_SERVER_PORT=8888
EXPOSE 8888
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"TOKEN_SERVER_PORT\",\"8888\")}/healthz', timeout=2)"
CMD ["token-server"]

# ---- sample agent: offline speech models baked in -----------------------------------------------
FROM base AS sample-agent
COPY --chown=app:app pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --extra agent --no-install-project
COPY --chown=app:app kit_settings ./kit_settings
COPY --chown=app:app token_server ./token_server
COPY --chown=app:app offline_speech ./offline_speech
COPY --chown=app:app sample_agent ./sample_agent
COPY --chown=app:app client_harness ./client_harness
COPY --chown=app:app local_stack ./local_stack
RUN --mount=type=cache,target=/root/.cache/uv uv sync --locked --no-dev --extra agent
# Load every model once now: the build fails here, not in production, if a weight is missing.
RUN python -c "from offline_speech import Synthesizer, Transcriber; \
from livekit.plugins import silero; Synthesizer().synthesize('ready'); Transcriber(); silero.VAD.load()"
USER app
ENV AGENT_HTTP_HOST=0.0.0.0 AGENT_HTTP_PORT=8081
EXPOSE 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"AGENT_HTTP_PORT\",\"8081\")}/', timeout=2)"
CMD ["sample-agent", "start"]
