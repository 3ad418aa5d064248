"""Which dispatch a followed room keeps once its agent came, which go, and when a withdrawal
deletes (pure logic; LiveKit's API stood in for by a recorder)."""

from __future__ import annotations

import time
from typing import Any, cast

from livekit import api
from livekit.protocol import agent as agent_proto
from livekit.protocol import models

from token_server.config import Settings
from token_server.dispatch_follow import (
    _AGAIN,
    FIRST_CHECK_SECONDS,
    LOOKS_PER_RETRY,
    SETTLED_SECONDS,
    DispatchFollower,
    FateKind,
    RoomView,
    keep_and_surplus,
)


def settings(**fields: Any) -> Settings:
    return Settings(
        livekit_url="ws://x", livekit_public_url="ws://x", api_key="k", api_secret="s", **fields
    )


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


class RecordingDispatcher:
    """Stands in for the LiveKit dispatch API: records which dispatches were deleted."""

    followed: object = None

    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []

    async def delete(self, room: str, dispatch_id: str) -> None:
        self.deleted.append((room, dispatch_id))


async def test_a_retry_handed_the_dispatch_keeps_it_when_the_first_request_withdraws() -> None:
    """The platform gave up on a slow answer and retried; the retry got the same dispatch and
    its token reached the caller. The first answer's failed delivery must not take the agent
    away: the dispatch goes only when every request holding it has withdrawn."""
    dispatcher = RecordingDispatcher()
    follower = DispatchFollower(settings(), cast(Any, None), cast(Any, dispatcher))
    assert follower.follow("room", "agent", "{}", "AD_1")
    assert follower.hold("room", "agent")  # the retry
    assert not follower.hold("other-room", "agent")  # not followed here: nothing to hold

    await follower.withdraw("room", "agent", "the caller hung up before the answer")
    assert dispatcher.deleted == [] and follower.dispatch_id("room", "agent") == "AD_1"

    await follower.withdraw("room", "agent", "the retry's caller hung up too")
    assert dispatcher.deleted == [("room", "AD_1")]
    assert follower.dispatch_id("room", "agent") is None


class ListingRoom:
    """Stands in for LiveKit's dispatch and room APIs for one room: lists what it is given and
    counts the calls, so a test sees what one look costs."""

    followed: object = None

    def __init__(self) -> None:
        self.dispatches: list[api.AgentDispatch] = []
        self.participants: list[models.ParticipantInfo] = []
        self.calls: list[str] = []
        self.deleted: list[str] = []
        self.room = self  # as LiveKitAPI.room

    async def list(self, room: str) -> list[api.AgentDispatch]:
        self.calls.append("list_dispatch")
        return list(self.dispatches)

    async def delete(self, room: str, dispatch_id: str) -> None:
        self.deleted.append(dispatch_id)

    async def list_participants(
        self, request: api.ListParticipantsRequest
    ) -> api.ListParticipantsResponse:
        self.calls.append("list_participants")
        return api.ListParticipantsResponse(participants=self.participants)


def following(server: ListingRoom) -> tuple[DispatchFollower, Any]:
    """A follower (its loop not started) following one room made with its dispatch, found by
    metadata on the first look."""
    follower = DispatchFollower(settings(), cast(Any, server), cast(Any, server))
    server.dispatches = [api.AgentDispatch(id="AD_1", agent_name="agent", metadata="{m}")]
    assert follower.follow("room", "agent", "{m}", None)
    return follower, follower._followed[("room", "agent")]


async def test_a_look_inside_the_wait_lists_dispatches_only() -> None:
    """A room still inside its first dispatch's wait (or with that dispatch taken) costs one call
    per look: who is in the room changes nothing until a dispatch again is due."""
    server = ListingRoom()
    follower, followed = following(server)
    next_at = await follower._look(followed)
    assert server.calls == ["list_dispatch"]
    assert followed.dispatch_id == "AD_1" and next_at is not None and next_at > 0
    assert not followed.fate.done()

    server.calls.clear()
    job = agent_proto.Job(state=agent_proto.JobState(status=agent_proto.JS_RUNNING))
    server.dispatches[0].state.jobs.append(job)
    assert await follower._look(followed) is None  # taken, settled, forgotten
    assert server.calls == ["list_dispatch"]
    assert followed.fate.result().kind is FateKind.TAKEN


async def test_before_dispatching_again_the_room_is_looked_at() -> None:
    """Due for another dispatch: the look that finds it due lists dispatches only; once its turn
    under DISPATCH_RETRY_RATE came, a fresh look also asks who is in the room: an agent already
    there (its job not listed yet) means no second dispatch."""
    server = ListingRoom()
    follower, followed = following(server)
    await follower._look(followed)  # adopts AD_1
    followed.attempts["AD_1"] -= followed.interval  # its wait is over, no job listed

    server.calls.clear()
    assert await follower._look(followed) == _AGAIN
    assert server.calls == ["list_dispatch"]

    server.calls.clear()
    assert await follower._look(followed, dispatching=True) == _AGAIN
    assert server.calls == ["list_dispatch", "list_participants"]

    server.calls.clear()
    agent = models.ParticipantInfo(
        identity="agent-1",
        kind=models.ParticipantInfo.Kind.AGENT,
        attributes={"lk.agent.name": "agent"},
    )
    server.participants = [agent]
    next_at = await follower._look(followed, dispatching=True)
    assert next_at not in (None, _AGAIN)
    assert server.calls == ["list_dispatch", "list_participants"]
    assert followed.fate.result().kind is FateKind.TAKEN


async def test_a_caller_who_left_is_seen_before_dispatching_again() -> None:
    server = ListingRoom()
    follower, followed = following(server)
    await follower._look(followed)
    followed.attempts["AD_1"] -= followed.interval
    server.participants = [models.ParticipantInfo(identity="simulated_user")]
    # the caller waits: dispatch again
    assert await follower._look(followed, dispatching=True) == _AGAIN
    server.participants = []
    assert await follower._look(followed) == _AGAIN  # a look that does not ask who is in
    assert not followed.fate.done()
    assert await follower._look(followed, dispatching=True) is None
    assert followed.fate.result().kind is FateKind.CALLER_LEFT
    assert server.deleted == ["AD_1"]


async def test_first_looks_share_the_budget_once_many_rooms_are_followed() -> None:
    """However fast rooms arrive, LiveKit gets at most LOOKS_PER_RETRY looks a second per
    dispatch the follower may add: past that, a new room's first look waits its turn too. Strict
    mode, whose answer waits on that look, keeps it at FIRST_CHECK_SECONDS."""
    for strict in (False, True):
        config = settings(dispatch_retry_rate=10, dispatch_strict=strict)
        follower = DispatchFollower(config, cast(Any, None), cast(Any, ListingRoom()))
        budget = int(LOOKS_PER_RETRY * config.dispatch_retry_rate)  # looks a second
        firsts = []
        for n in range(3 * budget):
            started = time.monotonic()
            assert follower.follow(f"room-{n}", "agent", "{}", f"AD_{n}")
            at = next(at for at, _, f in follower._queue if f.room == f"room-{n}")
            firsts.append(at - started)
        assert all(at >= FIRST_CHECK_SECONDS for at in firsts)
        if strict:
            assert max(firsts) < FIRST_CHECK_SECONDS + 0.1
        else:
            # a few rooms: looked at after FIRST_CHECK_SECONDS; 3 x budget rooms: the last ~3 s on
            assert firsts[5] < FIRST_CHECK_SECONDS + 0.1
            assert firsts[-1] >= 3.0 - 0.1
