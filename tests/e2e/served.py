"""What the dispatch and cluster tests run and require of every caller: a short text call, and
that each caller got its own room and an agent of the expected name that greeted and answered."""

from __future__ import annotations

from client_harness.caller.runner import run_many
from client_harness.caller.simulation import RunOptions
from client_harness.config import HarnessConfig
from client_harness.measurement.metrics import END_COMPLETED, SimulationResult
from client_harness.scenario import Scenario, Turn

# One short exchange: the agent greets, answers one turn, the caller hangs up.
SHORT_CALL = Scenario(
    name="short-call",
    turns=(Turn("Hi, I would like to book a table for two.", ("table", "book", "two")),),
    greeting_wait_seconds=45,
    response_timeout_seconds=30,
)


async def simulate(
    config: HarnessConfig, count: int, concurrency: int, scenario: Scenario = SHORT_CALL
) -> list[SimulationResult]:
    """`count` text simulations through the harness's own runner, `concurrency` at once."""
    run = await run_many(
        config, scenario, RunOptions(mode="text"), count=count, concurrency=concurrency
    )
    return run.results


def assert_all_served(results: list[SimulationResult], agent_name: str) -> None:
    """Each caller got an agent of this name that greeted and answered, in its own room."""
    assert len({r.room_name for r in results}) == len(results)
    for r in results:
        assert r.ok, (r.index, r.failed_step, r.error, r.diagnosis)
        assert r.agent_kind == "agent" and r.agent_name == agent_name, r.agent_identity
        assert r.end_reason == END_COMPLETED
        assert r.agent_utterances, "the agent never spoke"
        assert all(t.answered for t in r.turns)
