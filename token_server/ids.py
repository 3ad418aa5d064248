"""Random names for things the endpoint labels: request ids and participant identity suffixes.

They must not repeat, but they guard nothing (both are shown to whoever reads the logs or the
room), so they come from `random`, not the OS: `uuid4` and `secrets` make a getrandom system call
each, which was ~10% of a mint-only request's CPU. `random` is seeded from the OS once per
process and again in a forked child, so two processes (uvicorn workers, replicas) do not share
a sequence. Dispatch metadata ids, which decide whether this request made a room, keep `uuid4`.
"""

from __future__ import annotations

import random

_bits = random.getrandbits


def random_hex(chars: int) -> str:
    """`chars` lowercase hex digits."""
    return f"{_bits(chars * 4):0{chars}x}"
