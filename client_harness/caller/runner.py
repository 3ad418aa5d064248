"""Many simulations at once (the platform runs up to 50 in parallel), in one process and loop.

Speech models load once and are shared; one HTTP client serves every token request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from client_harness.caller.simulation import RunOptions, run_simulation
from client_harness.caller.speech import Speech
from client_harness.config import HarnessConfig
from client_harness.measurement.metrics import STEP_CONVERSATION, SimulationResult
from client_harness.scenario import Scenario

PLATFORM_MAX_CONCURRENCY = 50
# Simultaneous WebRTC joins from one process: beyond ~10 at once on a 2-core machine the joins
# starve each other (peer-connection timeouts), and the harness, not the deployment, would fail.
DEFAULT_CONNECT_PARALLELISM = 10

Progress = Callable[[int, int, int, float], None]  # done, total, failed, elapsed


@dataclass
class RunResult:
    results: list[SimulationResult]
    wall_s: float
    cpu_s: float  # this process (the harness) only
    concurrency: int
    peak_concurrency: int = 0  # most simulations past their start at the same moment
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def failed(self) -> list[SimulationResult]:
        return [r for r in self.results if not r.ok]


async def run_many(
    config: HarnessConfig,
    scenario: Scenario,
    options: RunOptions,
    *,
    count: int,
    concurrency: int,
    speech: Speech | None = None,
    progress: Progress | None = None,
    connect_parallelism: int = DEFAULT_CONNECT_PARALLELISM,
    ramp_seconds: float = 0.0,
) -> RunResult:
    """`ramp_seconds` spreads the starts evenly over that time (simulation i starts at
    i * ramp_seconds / count) instead of starting them all at once."""
    speech = speech or Speech(transcribe=options.mode == "voice" and options.transcribe)
    if options.mode == "voice":
        await asyncio.to_thread(speech.warm_up, [t.say for t in scenario.turns])
    semaphore = asyncio.Semaphore(max(1, concurrency))
    connect_slots = asyncio.Semaphore(max(1, connect_parallelism))
    results: list[SimulationResult | None] = [None] * count
    done = failed = active = peak = 0
    started, cpu_started = time.monotonic(), time.process_time()
    limits = httpx.Limits(
        max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4
    )

    async with httpx.AsyncClient(limits=limits) as client:

        async def one(index: int) -> None:
            nonlocal done, failed, active, peak
            if ramp_seconds > 0 and count > 1:
                await asyncio.sleep(index * ramp_seconds / count)
            async with semaphore:
                active += 1
                peak = max(peak, active)
                try:
                    result = await run_simulation(
                        config, scenario, options, speech, client, index, connect_slots
                    )
                except Exception as exc:  # a harness bug must not hide the other results
                    result = SimulationResult(index, "", options.mode, scenario.name)
                    result.fail(STEP_CONVERSATION, f"harness error: {type(exc).__name__}: {exc}")
                finally:
                    active -= 1
            results[index] = result
            done += 1
            failed += 0 if result.ok else 1
            if progress:
                progress(done, count, failed, time.monotonic() - started)

        await asyncio.gather(*(one(i) for i in range(count)))
    return RunResult(
        results=[r for r in results if r is not None],
        wall_s=time.monotonic() - started,
        cpu_s=time.process_time() - cpu_started,
        concurrency=concurrency,
        peak_concurrency=peak,
    )
