"""Ids from `random`: the right shape, no repeats, and a forked worker does not replay its
parent's sequence (which would repeat request ids across uvicorn workers)."""

from __future__ import annotations

import os

from token_server.ids import random_hex


def test_random_hex_has_the_asked_length_and_does_not_repeat() -> None:
    ids = [random_hex(32) for _ in range(10_000)]
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids)
    assert len(set(ids)) == len(ids)
    assert {len(random_hex(8)) for _ in range(1000)} == {8}


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, "".join(random_hex(32) for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    theirs = os.read(read, 4 * 32).decode()
    os.waitpid(pid, 0)
    ours = "".join(random_hex(32) for _ in range(4))
    assert len(theirs) == len(ours) and theirs != ours
