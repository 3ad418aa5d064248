"""Which dispatch a followed room keeps once its agent came, and which go (pure logic)."""

from __future__ import annotations

from token_server.dispatch_follow import SETTLED_SECONDS, RoomView, keep_and_surplus


def view(taken: dict[str, str] | None = None, agents: dict[str, int] | None = None) -> RoomView:
    taken = taken or {}
    return RoomView(frozenset(taken), taken, "", agents or {}, 1)


def test_one_dispatch_taken_is_kept_and_settled() -> None:
    keep, surplus, settled = keep_and_surplus({"A": 0.0}, view({"A": "agent-1"}), now=1.0)
    assert (keep, surplus, settled) == ("A", [], True)


def test_a_second_taken_dispatch_goes_and_the_agent_that_joined_first_stays() -> None:
    attempts = {"A": 0.0, "B": 1.0}
    taken = {"A": "agent-a", "B": "agent-b"}
    # B's agent joined first (A's job was slow to show): the caller met B's agent
    keep, surplus, settled = keep_and_surplus(
        attempts, view(taken, {"agent-a": 5_000, "agent-b": 2_000}), now=3.0
    )
    assert (keep, surplus, settled) == ("B", ["A"], True)


def test_a_young_dispatch_without_a_job_is_not_yet_surplus() -> None:
    # its job may be taken and not yet listed: deleting it now could remove an agent that came
    attempts = {"A": 0.0, "B": 1.0}
    keep, surplus, settled = keep_and_surplus(attempts, view({"A": "agent-a"}), now=2.0)
    assert (keep, surplus, settled) == ("A", [], False)
    later = 1.0 + SETTLED_SECONDS
    keep, surplus, settled = keep_and_surplus(attempts, view({"A": "agent-a"}), now=later)
    assert (keep, surplus, settled) == ("A", ["B"], True)


def test_an_agent_in_the_room_before_its_job_is_listed() -> None:
    attempts = {"A": 0.0, "B": 1.0}
    keep, surplus, settled = keep_and_surplus(attempts, view(agents={"agent-x": 1}), now=2.0)
    assert (keep, surplus, settled) == (None, [], False)
    # listing trusted and still no job of ours: the agent is someone else's; ours are inert
    keep, surplus, settled = keep_and_surplus(
        attempts, view(agents={"agent-x": 1}), now=1.0 + SETTLED_SECONDS
    )
    assert (keep, sorted(surplus), settled) == (None, ["A", "B"], True)
