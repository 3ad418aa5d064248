"""Follow each dispatch until a worker has taken its job, and dispatch again when none did.

livekit-server offers an agent job once. When no worker is registered under the name at that
instant, every worker is at its load threshold, or the chosen worker refuses, the job is dropped:
the dispatch stays listed with no job and the caller waits for an agent that never comes. Self-
hosted LiveKit has no re-dispatch (LiveKit Cloud's `restart_policy` does not apply), so this
module is the "agent watcher" LiveKit's maintainers suggest: after the token answer has gone out,
one background loop per process looks at each followed dispatch (ListDispatch: cost independent
of the rooms on the server) and, when no worker took the job, deletes it and dispatches again,
with backoff, until a worker takes it, the caller has left, or a deadline passes. Its first look
also finds the id of a dispatch the request made in one call, with the room (`Dispatcher`).

Every dispatch ends with one `dispatch_fate` log line: taken after N ms and K dispatches, or
expired / caller left / room closed, and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError
from livekit.protocol import agent as agent_proto
from livekit.protocol import models

from token_server.config import Settings
from token_server.dispatch import Dispatcher
from token_server.metrics import (
    DISPATCH_FATES,
    DISPATCH_TAKEN_SECONDS,
    DISPATCHES_FOLLOWED,
    livekit_call,
)

logger = logging.getLogger("token_server.dispatch")

FIRST_CHECK_SECONDS = 0.25  # after a dispatch: most jobs are taken (or dropped) by then
CHECK_SECONDS = 0.25  # between looks at a room still waiting for its agent
# How long the first dispatch gets before another is added beside it. A job a worker accepted
# usually shows on its dispatch within ~0.25 s, but a busy worker answers livekit-server's offer
# late, and its job shows late too: dispatching again then could send a second agent (see
# `keep_and_surplus`). Once the first went untaken, the worker was most likely full, and a full
# worker makes livekit-server drop an offer at once: later dispatches follow every
# DISPATCH_RETRY_INTERVAL_SECONDS, so a waiting caller gets a freed slot quickly; the more rooms
# wait, the rarer each one's turn (DISPATCH_RETRY_RATE, LOOKS_PER_RETRY).
FIRST_ATTEMPT_SECONDS = 2.0
# After this long, a dispatch listed with no job has none and never will: livekit-server records
# a job on its dispatch only once its launch returns, which waits out the server's refresh of
# registered agent names (5 s, whenever a worker registers and once a minute) plus the job
# request itself (psrpc's 3 s). Until then "no job listed" may mean "taken, not yet listed".
SETTLED_SECONDS = 8.5
# Looks (two constant-cost API calls each) per second a process spends, per dispatch it may add
# (DISPATCH_RETRY_RATE): past that, rooms are looked at less often than CHECK_SECONDS.
LOOKS_PER_RETRY = 4
_AGAIN = -1.0  # from a look: dispatch again now
AGENT_NAME_ATTRIBUTE = "lk.agent.name"
_TAKEN_STATUSES = (agent_proto.JS_PENDING, agent_proto.JS_RUNNING, agent_proto.JS_SUCCESS)


class FateKind(enum.StrEnum):
    TAKEN = "taken"  # a worker accepted the job (listed on the dispatch, or its agent is in)
    EXPIRED = "expired"  # the deadline passed with no worker taking it
    CALLER_LEFT = "caller_left"  # the caller joined, then left before any agent came
    ROOM_CLOSED = "room_closed"  # the room no longer exists on the server
    REMOVED = "removed"  # someone else deleted the dispatches
    CANCELLED = "cancelled"  # the endpoint withdrew it (strict-mode timeout, answer not sent)
    SHUTDOWN = "shutdown"  # the token server stopped while following it


class Blocker(enum.StrEnum):
    """What kept the job from being taken, as far as LiveKit's API shows it; the values are the
    endpoint's strict-mode error codes."""

    NOT_TAKEN = "agent_unavailable"  # no worker took it (none registered, all full, no answer)
    JOB_FAILED = "agent_job_failed"  # a worker took it and the job failed
    LIVEKIT = "livekit_unavailable"  # LiveKit's API did not answer or refused


@dataclass(frozen=True)
class Fate:
    kind: FateKind
    dispatch_id: str
    dispatches: int  # how many dispatches it took (1 = the first was taken)
    after_seconds: float  # from the first dispatch
    reason: str  # what was last observed, in words
    blocker: Blocker = Blocker.NOT_TAKEN  # meaningful when not taken

    @property
    def taken(self) -> bool:
        return self.kind is FateKind.TAKEN


@dataclass(frozen=True)
class RoomView:
    """One look at a followed room: our dispatches as listed, and who is in the room."""

    listed: frozenset[str]  # our dispatch ids the server still lists
    taken: dict[str, str]  # dispatch id -> identity of the agent its accepted job sends
    failed: str  # the error of a job that failed, if any
    agents: dict[str, int]  # identity -> joined at (ms) of agents of this name in the room
    callers: int | None  # participants that are not agents (None: not looked at this time)


def keep_and_surplus(
    attempts: dict[str, float], view: RoomView, now: float
) -> tuple[str | None, list[str], bool]:
    """Once an agent came: which dispatch to keep, which to delete now, and whether all are settled.

    Dispatches beside the kept one go once they are known to be surplus: taken too (a second agent:
    livekit-server removes it from the room when its dispatch is deleted) or settled with no job.
    The kept one is the dispatch whose agent joined first: the one the caller met."""
    taken = [d for d in attempts if d in view.taken]
    keep = None
    if taken:
        joined = [(view.agents.get(view.taken[d], 2**62), attempts[d], d) for d in taken]
        keep = min(joined)[2]
    surplus = [
        d
        for d in attempts
        if d != keep and (d in view.taken or now - attempts[d] >= SETTLED_SECONDS)
    ]
    if keep is not None:
        settled = len(attempts) - len(surplus) == 1
    else:  # an agent came but no job is listed yet: settled once the listing can be trusted
        settled = all(now - at >= SETTLED_SECONDS for at in attempts.values())
    return keep, surplus, settled


@dataclass(eq=False)
class _Followed:
    room: str
    agent_name: str
    metadata: str
    started: float
    attempts: dict[str, float]  # dispatch id -> when it was created, oldest first
    # made with the room in one call: its id is not known until a look finds it by metadata
    unconfirmed: bool = False
    interval: float = FIRST_ATTEMPT_SECONDS
    caller_seen: bool = False
    kept: str | None = None  # once taken: the dispatch whose agent stays
    problem: str = "no worker has taken the job yet"
    problem_blocker: Blocker = Blocker.NOT_TAKEN
    job_error: str = ""
    created: int = 1  # dispatches made for this room so far
    # Requests answered (or still being answered) with this room's dispatch: the one that created
    # it and each retry handed it. A withdrawal by one must not take the agent from the others.
    holders: int = 1
    fate: asyncio.Future[Fate] = field(default_factory=lambda: _loop().create_future())

    @property
    def dispatch_id(self) -> str | None:
        """The dispatch a retried token request is told about: the kept one, else the newest."""
        return self.kept or next(reversed(self.attempts), None)

    @property
    def blocker(self) -> Blocker:
        return Blocker.JOB_FAILED if self.job_error else self.problem_blocker

    @property
    def observed(self) -> str:
        return self.job_error or self.problem

    def blocked(self, blocker: Blocker, problem: str) -> None:
        self.problem_blocker, self.problem = blocker, problem


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class _RoomGone(Exception):
    pass


class _RateLimit:
    """At most `rate` re-dispatches a second across every followed room (a token bucket)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)


class DispatchFollower:
    """One loop per process following every dispatch this process created, bounded in number.

    A room waits in two phases. Until an agent comes, each look lists the room's dispatches (and
    its participants before dispatching again); when no worker took the job (2 s for the first
    dispatch, then DISPATCH_RETRY_INTERVAL_SECONDS), another dispatch is added beside the first,
    and dispatches settled with no job are deleted. Once an
    agent came the fate is known (strict mode answers then), and the room is looked at until every
    dispatch beside the kept one is settled: a second agent, possible when a slow-to-show job was
    dispatched again, is removed then, and the caller keeps the agent it met first.
    """

    def __init__(
        self, settings: Settings, lkapi: api.LiveKitAPI, dispatcher: Dispatcher, parallel: int = 16
    ) -> None:
        self._settings = settings
        self._api = lkapi
        self._dispatcher = dispatcher
        self._followed: dict[tuple[str, str], _Followed] = {}
        self._queue: list[tuple[float, int, _Followed]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(parallel)
        self._rate = _RateLimit(settings.dispatch_retry_rate)
        self._steps: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        dispatcher.followed = self.dispatch_id

    # --- what the endpoint calls ---------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="dispatch-follower")

    def dispatch_id(self, room: str, agent_name: str) -> str | None:
        """The current dispatch of a room being followed: a retry finds it without a server call
        (None too while the first look has not found the id of a dispatch made with the room)."""
        followed = self._followed.get((room, agent_name))
        return followed.dispatch_id if followed else None

    def following(self, room: str, agent_name: str) -> bool:
        return (room, agent_name) in self._followed

    def follow(self, room: str, agent_name: str, metadata: str, dispatch_id: str | None) -> bool:
        """Start following a new dispatch (`dispatch_id` None: made with the room, found by its
        `metadata` on the first look); False when the bound on followed rooms is reached."""
        key = (room, agent_name)
        if key in self._followed:
            return True
        if len(self._followed) >= self._settings.dispatch_max_followed:
            logger.warning(
                _line(
                    "dispatch_not_followed",
                    room=room,
                    agent_name=agent_name,
                    dispatch_id=dispatch_id,
                    reason=f"already following DISPATCH_MAX_FOLLOWED="
                    f"{self._settings.dispatch_max_followed} rooms",
                )
            )
            return False
        now = time.monotonic()
        attempts = {dispatch_id: now} if dispatch_id else {}
        followed = _Followed(room, agent_name, metadata, now, attempts, not dispatch_id)
        self._followed[key] = followed
        DISPATCHES_FOLLOWED.inc()
        # the first look shares the budget too (strict mode's answer waits on it: not deferred)
        first = FIRST_CHECK_SECONDS
        if not self._settings.dispatch_strict:
            first = max(first, self._spread())
        self._schedule(followed, now + first)
        return True

    async def wait_taken(self, room: str, agent_name: str, seconds: float) -> Fate | None:
        """The dispatch's fate once known, or None if it is still open after `seconds`."""
        followed = self._followed.get((room, agent_name))
        if followed is None:
            return None
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(followed.fate)
        except TimeoutError:
            return None

    def explain(self, room: str, agent_name: str) -> tuple[int, Blocker, str]:
        """How many dispatches so far, what keeps the job from being taken, and what was last
        observed, in words."""
        followed = self._followed.get((room, agent_name))
        if followed is None:
            return 0, Blocker.NOT_TAKEN, ""
        return followed.created, followed.blocker, followed.observed

    def hold(self, room: str, agent_name: str) -> bool:
        """A retried request is being answered with this room's dispatch; False if the room is
        not followed here (then nothing of it is this process's to withdraw)."""
        followed = self._followed.get((room, agent_name))
        if followed is None:
            return False
        followed.holders += 1
        return True

    async def withdraw(self, room: str, agent_name: str, reason: str) -> None:
        """One request's token will not be used: when no other request holds one for the room,
        stop following and delete the dispatches."""
        followed = self._followed.get((room, agent_name))
        if followed is None:
            return
        followed.holders -= 1
        if followed.holders > 0:
            logger.info(
                _line(
                    "dispatch_kept",
                    room=room,
                    agent_name=agent_name,
                    reason=f"{reason}; {followed.holders} other request(s) hold its token",
                )
            )
            return
        if followed.unconfirmed:  # withdrawn before the first look: find what to delete
            with contextlib.suppress(TimeoutError, ServerError, aiohttp.ClientError, OSError):
                async with asyncio.timeout(self._settings.dispatch_timeout_seconds):
                    self._adopt(followed, await self._dispatcher.list(room))
        await self._finish(followed, FateKind.CANCELLED, reason, delete=True)

    async def close(self) -> None:
        """Stop following: each dispatch still open gets a `shutdown` fate line."""
        tasks = [t for t in (self._loop_task, *self._steps) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for followed in list(self._followed.values()):
            await self._finish(followed, FateKind.SHUTDOWN, "the token server stopped")

    # --- the loop -------------------------------------------------------------------------------

    def _spread(self) -> float:
        """The least time between two looks at one room: with many rooms followed, each is
        looked at less often, so the load on LiveKit is bounded (LOOKS_PER_RETRY looks a second
        per dispatch it may add), however fast rooms arrive."""
        return len(self._followed) / (LOOKS_PER_RETRY * self._settings.dispatch_retry_rate)

    def _schedule(self, followed: _Followed, at: float) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), followed))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, followed = heapq.heappop(self._queue)
                if self._followed.get((followed.room, followed.agent_name)) is not followed:
                    continue  # finished meanwhile
                task = asyncio.create_task(self._step(followed))
                self._steps.add(task)
                task.add_done_callback(self._steps.discard)
            self._wake.clear()
            wait = self._queue[0][0] - now if self._queue else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _step(self, followed: _Followed) -> None:
        try:
            async with self._slots:
                next_at = await self._look(followed)
            if next_at == _AGAIN:
                await self._rate.take()  # outside the slots: looks at other rooms go on
                if not self._is_followed(followed) or followed.fate.done():
                    return  # withdrawn or stopped meanwhile: no dispatch for it
                async with self._slots:
                    # the turn may have come seconds later: look again, at who is in the room too
                    next_at = await self._look(followed, dispatching=True)
                    if next_at == _AGAIN:
                        next_at = await self._dispatch_again(followed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not end the follow silently
            logger.exception("dispatch follow step failed", exc_info=exc)
            followed.problem = f"follow step failed: {type(exc).__name__}: {exc}"
            next_at = time.monotonic() + followed.interval
        if next_at is not None and self._is_followed(followed):
            self._schedule(followed, max(next_at, time.monotonic() + self._spread()))

    async def _look(self, followed: _Followed, dispatching: bool = False) -> float | None:
        """One look at a followed room; returns when to look next (None: done with it, _AGAIN:
        dispatch again now). `dispatching`: the look right before another dispatch, which also
        asks who is in the room (an agent whose job is not listed yet; a caller who left)."""
        settings = self._settings
        now = time.monotonic()
        waiting = not followed.fate.done()
        if waiting and now - followed.started >= settings.dispatch_retry_deadline_seconds:
            await self._finish(followed, FateKind.EXPIRED, followed.observed, delete=True)
            return None
        try:
            async with asyncio.timeout(settings.dispatch_timeout_seconds):
                view = await self._view(followed, dispatching)
        except _RoomGone as exc:
            await self._finish(followed, FateKind.ROOM_CLOSED, str(exc))
            return None
        except (TimeoutError, ServerError, aiohttp.ClientError, OSError) as exc:
            followed.blocked(Blocker.LIVEKIT, f"LiveKit API: {_describe(exc)}")
            return time.monotonic() + followed.interval
        for gone in [d for d in followed.attempts if d not in view.listed]:
            del followed.attempts[gone]
        if view.failed:
            followed.job_error = f"the worker took the job and it failed: {view.failed}"

        if not waiting or view.taken or view.agents:
            return await self._settle(followed, view, now)
        if not followed.attempts:
            await self._finish(followed, FateKind.REMOVED, "its dispatches are no longer listed")
            return None
        if view.callers:
            followed.caller_seen = True
        elif view.callers == 0 and followed.caller_seen:
            await self._finish(
                followed, FateKind.CALLER_LEFT, "the caller left before an agent came", delete=True
            )
            return None
        followed.blocked(
            Blocker.NOT_TAKEN,
            "no worker took the job: none is registered under this agent name, or every one is "
            "at its load threshold (livekit-server's log says which)",
        )
        # dispatches settled with no job are inert: delete them, all but the newest
        newest_id = next(reversed(followed.attempts))
        await self._delete(
            followed,
            [
                d
                for d, at in followed.attempts.items()
                if d != newest_id and now - at >= SETTLED_SECONDS
            ],
        )
        newest = max(followed.attempts.values())
        if now - newest < followed.interval:
            return min(now + CHECK_SECONDS, newest + followed.interval)
        return _AGAIN

    async def _settle(self, followed: _Followed, view: RoomView, now: float) -> float | None:
        """An agent came: the fate is known; remove what is surplus until nothing is unsettled."""
        keep, surplus, settled = keep_and_surplus(followed.attempts, view, now)
        if keep is not None:
            followed.kept = keep
        if not followed.fate.done():
            how = "a worker accepted the job" if view.taken else "its agent is in the room"
            self._resolve(followed, FateKind.TAKEN, how)
        duplicates = [d for d in surplus if d in view.taken]
        if duplicates:
            logger.warning(
                _line(
                    "dispatch_duplicate_removed",
                    room=followed.room,
                    agent_name=followed.agent_name,
                    kept=keep,
                    removed=duplicates,
                )
            )
        await self._delete(followed, surplus)
        if settled:
            self._forget(followed)
            return None
        return now + CHECK_SECONDS * 4

    async def _dispatch_again(self, followed: _Followed) -> float:
        settings = self._settings
        try:
            async with asyncio.timeout(settings.dispatch_timeout_seconds):
                new_id = await self._dispatcher.create(
                    followed.room, followed.agent_name, followed.metadata, again=True
                )
        except (TimeoutError, ServerError, aiohttp.ClientError, OSError) as exc:
            followed.blocked(Blocker.LIVEKIT, f"dispatching again failed: {_describe(exc)}")
            return time.monotonic() + followed.interval
        now = time.monotonic()
        followed.attempts[new_id] = now
        followed.created += 1
        followed.interval = settings.dispatch_retry_interval_seconds
        logger.debug(
            _line(
                "dispatch_again",
                room=followed.room,
                agent_name=followed.agent_name,
                dispatch_id=new_id,
                dispatches=followed.created,
            )
        )
        return now + FIRST_CHECK_SECONDS

    async def _view(self, followed: _Followed, dispatching: bool) -> RoomView:
        try:
            dispatches = await self._dispatcher.list(followed.room)
        except ServerError as exc:
            # livekit-server answers for a room only from the node hosting it; none does once
            # the room has closed (it stalls ~3 s, then "no response from servers")
            if exc.code in {"not_found", "unavailable"}:
                raise _RoomGone(f"the room is gone: {_describe(exc)}") from None
            raise
        self._adopt(followed, dispatches)
        listed, taken, failed = set(), {}, ""
        for dispatch in dispatches:
            if dispatch.id not in followed.attempts:
                continue
            listed.add(dispatch.id)
            for job in dispatch.state.jobs:
                if job.state.status in _TAKEN_STATUSES:
                    taken[dispatch.id] = job.state.participant_identity
                elif job.state.error:
                    failed = job.state.error
        if not (dispatching or self._who_matters(followed, taken)):
            return RoomView(frozenset(listed), taken, failed, {}, None)
        with livekit_call("list_participants"):
            participants = await self._api.room.list_participants(
                api.ListParticipantsRequest(room=followed.room)
            )
        agents, callers = {}, 0
        for p in participants.participants:
            if p.kind != models.ParticipantInfo.Kind.AGENT:
                callers += 1
            elif p.attributes.get(AGENT_NAME_ATTRIBUTE, followed.agent_name) == followed.agent_name:
                agents[p.identity] = p.joined_at_ms or p.joined_at * 1000
        return RoomView(frozenset(listed), taken, failed, agents, callers)

    def _who_matters(self, followed: _Followed, taken: dict[str, str]) -> bool:
        """Whether a look needs the room's participants as well as its dispatches, besides the
        look right before dispatching again: in strict mode while the answer waits (an agent can
        be in the room ~5 s before livekit-server lists its job, just after a worker registers),
        and to choose which of several taken dispatches stays (the agent that joined first).
        Otherwise a room whose one dispatch is taken (the usual first look), or one still
        waiting, costs LiveKit one call per look."""
        if followed.fate.done():
            return True
        if not taken:
            return self._settings.dispatch_strict
        return len(followed.attempts) > 1

    @staticmethod
    def _adopt(followed: _Followed, dispatches: list[api.AgentDispatch]) -> None:
        """A dispatch made with the room: its id is the one listed with this request's metadata."""
        if not followed.unconfirmed:
            return
        followed.unconfirmed = False
        for dispatch in dispatches:
            if (
                dispatch.agent_name == followed.agent_name
                and dispatch.metadata == followed.metadata
            ):
                followed.attempts[dispatch.id] = followed.started

    async def _delete(self, followed: _Followed, dispatch_ids: list[str]) -> None:
        for dispatch_id in dispatch_ids:
            try:
                await self._dispatcher.delete(followed.room, dispatch_id)
            except (TimeoutError, ServerError, aiohttp.ClientError, OSError) as exc:
                followed.problem = f"deleting a dispatch failed: {_describe(exc)}"
                continue
            followed.attempts.pop(dispatch_id, None)

    def _is_followed(self, followed: _Followed) -> bool:
        return self._followed.get((followed.room, followed.agent_name)) is followed

    def _forget(self, followed: _Followed) -> None:
        key = (followed.room, followed.agent_name)
        if self._followed.get(key) is followed:
            del self._followed[key]
            DISPATCHES_FOLLOWED.dec()

    async def _finish(
        self, followed: _Followed, kind: FateKind, reason: str, delete: bool = False
    ) -> None:
        self._forget(followed)
        if delete:
            await self._delete(followed, list(followed.attempts))
            if followed.attempts:
                reason += f" ({followed.problem})"
        if not followed.fate.done():
            self._resolve(followed, kind, reason)

    def _resolve(self, followed: _Followed, kind: FateKind, reason: str) -> None:
        fate = Fate(
            kind,
            followed.dispatch_id or "",
            followed.created,
            round(time.monotonic() - followed.started, 3),
            reason,
            followed.blocker,
        )
        followed.fate.set_result(fate)
        DISPATCH_FATES.labels(kind.value).inc()
        if fate.taken:
            DISPATCH_TAKEN_SECONDS.observe(fate.after_seconds)
        level = logging.INFO if kind in {FateKind.TAKEN, FateKind.SHUTDOWN} else logging.WARNING
        logger.log(
            level,
            _line(
                "dispatch_fate",
                room=followed.room,
                agent_name=followed.agent_name,
                fate=kind.value,
                after_ms=round(fate.after_seconds * 1000),
                dispatches=fate.dispatches,
                dispatch_id=fate.dispatch_id,
                reason=reason,
            ),
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ServerError):
        return f"{exc.code} {exc.message}".strip()
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"


def _line(event: str, **fields: object) -> str:
    return json.dumps({"event": event, **fields}, separators=(",", ":"))
