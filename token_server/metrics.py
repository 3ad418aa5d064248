"""Prometheus metrics: what operators watch on a token endpoint they deploy.

Served at `/metrics` on the endpoint's own port, behind the same API key as the token route (the
endpoint is reachable by the simulation platform, so its metrics must not be public; Prometheus
sends the key with `authorization: {credentials: ...}` in its scrape config). One port keeps a
deploy to one exposed service, and with several uvicorn workers every worker answers for all of
them: `__main__` points PROMETHEUS_MULTIPROC_DIR at a directory they share before they start.

Every metric is defined here, once; the modules that observe something import what they need.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER_ROUTE = "other"  # any path that is not one of the app's routes (404s): bounded labels

REQUESTS = Counter(
    "token_server_requests",
    "Requests answered, by route and outcome (`ok`, or the error code of the answer).",
    ["route", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "token_server_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LIVEKIT_CALL_SECONDS = Histogram(
    "token_server_livekit_api_duration_seconds",
    "Each call to LiveKit's server API, by call and result (`ok` or `error`).",
    ["call", "result"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DISPATCHES_CREATED = Counter(
    "token_server_dispatches_created",
    "Agent dispatches created: `request` for a room's first, `again` when no worker took the "
    "job of the one before.",
    ["reason"],
)
DISPATCH_FATES = Counter(
    "token_server_dispatch_fates",
    "How each followed dispatch ended: taken, expired, caller_left, room_closed, removed, "
    "cancelled or shutdown.",
    ["fate"],
)
DISPATCH_TAKEN_SECONDS = Histogram(
    "token_server_dispatch_taken_seconds",
    "From a room's first dispatch until a worker took its job.",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120),
)
DISPATCHES_FOLLOWED = Gauge(
    "token_server_dispatches_followed",
    "Dispatches being followed right now, waiting for a worker to take the job or to settle.",
    multiprocess_mode="livesum",
)


@contextlib.contextmanager
def livekit_call(call: str) -> Iterator[None]:
    """Time one LiveKit API call; `result` says whether it raised."""
    started = time.perf_counter()
    result = "error"
    try:
        yield
        result = "ok"
    finally:
        LIVEKIT_CALL_SECONDS.labels(call, result).observe(time.perf_counter() - started)


_request_series: dict[tuple[str, str], tuple[Any, Any]] = {}


def observe_request(route: str, outcome: str, seconds: float) -> None:
    """Count one answered request (the label children are looked up once per route and outcome,
    both bounded sets)."""
    series = _request_series.get((route, outcome))
    if series is None:
        series = (REQUESTS.labels(route, outcome), REQUEST_SECONDS.labels(route))
        _request_series[(route, outcome)] = series
    series[0].inc()
    series[1].observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text format for a scrape: this process's metrics, or every worker's when they share
    a multiprocess directory."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drop a stopped worker's live gauges from the shared directory (counters stay summed)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)
