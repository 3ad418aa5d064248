"""Diagnosis: each observation of a missing agent maps to the cause the evidence supports."""

from __future__ import annotations

import json

import pytest

from client_harness.measurement.diagnosis import (
    AGENT_NEVER_JOINED,
    AGENT_UNAVAILABLE,
    DISPATCH_NOT_LISTED,
    ERR_NO_CAPACITY,
    ERR_NO_SERVERS,
    JOB_FAILED_KEY,
    LOG_NO_WORKER_REGISTERED,
    NO_WORKER_TOOK_JOB,
    JoinObservation,
    ListedDispatch,
    ListedJob,
    diagnose_agent_join,
    token_refusal_causes,
)

AUTOMATIC = ListedDispatch("", "AD_auto")  # livekit-server adds it to every room it creates


def taken(status: str, error: str = "") -> ListedJob:
    return ListedJob("AJ_1", status, error, participant_identity="agent-AJ_1", worker_id="AW_1")


@pytest.mark.parametrize(
    ("observation", "first"),
    [
        (JoinObservation("r", 3, listed_dispatches=(AUTOMATIC,)), "no_dispatch"),
        (JoinObservation("r", 3), "no_dispatch"),
        (
            JoinObservation(
                "r", 3, configured_agent_name="a", listed_dispatches=(ListedDispatch("b"),)
            ),
            "agent_name_mismatch",
        ),
        (JoinObservation("r", 3, listed_dispatches=(ListedDispatch("a"),)), NO_WORKER_TOOK_JOB),
        (JoinObservation("r", 3, token_room="other"), "room_mismatch"),
        (JoinObservation("r", 3, token_agents=("a",)), "token_dispatch_ignored"),
        (
            JoinObservation("r", 3, response_dispatch_id="AD_1", response_agent_name="a"),
            "agent_not_running",
        ),
        (
            JoinObservation("r", 3, response_dispatch_id="AD_1", listed_dispatches=(AUTOMATIC,)),
            DISPATCH_NOT_LISTED,
        ),
        # an answer naming its agent, no id (the room created with it in one call)
        (JoinObservation("r", 3, response_agent_name="a"), "agent_not_running"),
        (
            JoinObservation("r", 3, response_agent_name="a", listed_dispatches=(AUTOMATIC,)),
            DISPATCH_NOT_LISTED,
        ),
        # token mode names the agent too: the token's roomConfig is the dispatch
        (
            JoinObservation("r", 3, response_agent_name="a", token_agents=("a",)),
            "token_dispatch_ignored",
        ),
        (
            JoinObservation(
                "r", 3, listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_FAILED"),)),)
            ),
            JOB_FAILED_KEY,
        ),
        (
            JoinObservation(
                "r", 3, listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_RUNNING"),)),)
            ),
            AGENT_NEVER_JOINED,
        ),
    ],
)
def test_join_diagnosis_rules(observation: JoinObservation, first: str) -> None:
    causes = diagnose_agent_join(observation)
    assert causes[0].key == first
    assert all(c.fix and c.summary and c.evidence for c in causes)


def test_a_dispatch_no_worker_took_names_both_server_reasons() -> None:
    listed = (AUTOMATIC, ListedDispatch("booker", "AD_1"), ListedDispatch("booker", "AD_2"))
    obs = JoinObservation(
        "r", 30, configured_agent_name="booker", response_dispatch_id="AD_2",
        listed_dispatches=listed,
    )  # fmt: skip
    (cause,) = diagnose_agent_join(obs)
    assert cause.key == NO_WORKER_TOOK_JOB
    assert "2 dispatches AD_1, AD_2 of 'booker'" in cause.evidence
    assert "empty state.jobs after 30 s" in cause.evidence
    # No worker registered under the name, or every worker full: each with livekit-server's line.
    assert LOG_NO_WORKER_REGISTERED in cause.fix
    assert ERR_NO_CAPACITY in cause.fix and ERR_NO_SERVERS in cause.fix
    assert "target_load" in cause.fix


def test_a_failed_job_gives_its_error() -> None:
    failed = ListedJob("AJ_9", "JS_FAILED", "entrypoint raised ValueError")
    obs = JoinObservation(
        "r", 3, configured_agent_name="a",
        listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_RUNNING"), failed)),),
    )  # fmt: skip
    cause = diagnose_agent_join(obs)[0]
    assert cause.key == JOB_FAILED_KEY
    assert "AJ_9" in cause.evidence and "entrypoint raised ValueError" in cause.evidence
    assert "AJ_9" in cause.fix


def test_a_job_taken_without_an_agent_names_the_job_and_participant() -> None:
    obs = JoinObservation(
        "r", 12, listed_dispatches=(ListedDispatch("a", "AD_1", (taken("JS_RUNNING"),)),)
    )
    cause = diagnose_agent_join(obs)[0]
    assert cause.key == AGENT_NEVER_JOINED
    assert "worker AW_1 took job AJ_1" in cause.evidence
    assert "'agent-AJ_1'" in cause.evidence and "12 s" in cause.evidence


def test_the_expected_agents_dispatch_is_judged_not_another_ones() -> None:
    other = ListedDispatch("other", "AD_1", (taken("JS_RUNNING"),))
    mine = ListedDispatch("mine", "AD_2")
    causes = diagnose_agent_join(
        JoinObservation("r", 3, configured_agent_name="mine", listed_dispatches=(other, mine))
    )
    assert [c.key for c in causes] == [NO_WORKER_TOOK_JOB]
    assert "'mine'" in causes[0].evidence and "'other'" not in causes[0].evidence


def test_strict_mode_refusal_is_a_cause_and_shows_the_endpoint_detail() -> None:
    from client_harness.caller.token_answer import TokenEndpointError, parse_token_response

    body = json.dumps({"error": AGENT_UNAVAILABLE, "detail": "no worker registered as 'a'"})
    (cause,) = token_refusal_causes(503, body.encode())
    assert cause.key == AGENT_UNAVAILABLE
    assert "no worker registered as 'a'" in cause.evidence and "HTTP 503" in cause.evidence
    assert LOG_NO_WORKER_REGISTERED in cause.fix
    # The token step's error carries the endpoint's own error code and detail.
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(503, "application/json", body)
    assert "'agent_unavailable'" in info.value.detail
    assert "no worker registered as 'a'" in info.value.detail
    failed = b'{"error": "agent_job_failed", "detail": "the worker took the job and it failed"}'
    assert [c.key for c in token_refusal_causes(503, failed)] == [JOB_FAILED_KEY]
    # Other refusals are shown as they are, without a cause.
    assert token_refusal_causes(503, b'{"error": "livekit_unavailable"}') == []
    assert token_refusal_causes(502, b"<html>") == []
    assert token_refusal_causes(200, body) == []


def test_listing_error_is_reported() -> None:
    causes = diagnose_agent_join(JoinObservation("r", 3, list_error="401"))
    assert causes[-1].key == "diagnosis_incomplete"
