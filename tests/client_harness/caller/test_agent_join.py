"""The join step's reading of the server API's dispatch listing."""

from __future__ import annotations

from client_harness.measurement.diagnosis import (
    ListedDispatch,
    ListedJob,
)


def test_listed_dispatch_reads_the_server_api_message() -> None:
    from livekit import api
    from livekit.protocol import agent

    from client_harness.caller.agent_join import listed_dispatch

    job = agent.Job(
        id="AJ_1",
        state=agent.JobState(
            status=agent.JobStatus.JS_FAILED, error="boom", participant_identity="p",
            worker_id="AW_1",
        ),
    )  # fmt: skip
    message = api.AgentDispatch(id="AD_1", agent_name="a", state=api.AgentDispatchState(jobs=[job]))
    assert listed_dispatch(message) == ListedDispatch(
        "a", "AD_1", (ListedJob("AJ_1", "JS_FAILED", "boom", "p", "AW_1"),)
    )
    assert listed_dispatch(api.AgentDispatch(id="AD_2", agent_name="a")).jobs == ()
