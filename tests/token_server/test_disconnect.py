"""caller_hung_up steps `receive()` once: a disconnect already known is seen, a receive that
would wait leaves nothing behind (no waiter left on what it waited for), and either way the
handler is never suspended. Against uvicorn itself: tests/e2e/test_dispatch_reliability.py's
caller hanging up before the answer."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from token_server.disconnect import caller_hung_up


async def test_a_known_disconnect_is_seen() -> None:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    assert caller_hung_up(receive)


async def test_a_receive_that_would_wait_means_the_caller_is_there() -> None:
    """uvicorn's receive once the body is read: wait for the next event (a disconnect)."""
    event = asyncio.Event()
    asked = 0

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        await event.wait()
        return {"type": "http.disconnect"}

    assert not caller_hung_up(receive)
    assert asked == 1
    assert not event._waiters  # the wait was given up, not left behind
    event.set()
    assert caller_hung_up(receive)  # the disconnect, once known, is seen on the next look


async def test_more_body_is_not_a_disconnect() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    assert not caller_hung_up(receive)
