"""Read a LiveKit access token's claims without the secret, and judge whether they can work.

The platform cannot verify the signature (it has no secret) and neither can `check`; what it can
see is whether the token would let the caller into the room it asked for: the video grant's room
equals the requested room, roomJoin is allowed, the token is not expired or not-yet-valid, and
the caller may publish audio and subscribe to the agent.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any

CLOCK_SKEW_SECONDS = 60.0
SHORT_TTL_SECONDS = 300.0


@dataclass(frozen=True)
class ClaimsReport:
    claims: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def identity(self) -> str:
        return str(self.claims.get("sub", ""))

    @property
    def dispatched_agents(self) -> list[dict[str, Any]]:
        """roomConfig.agents riding in the token (token-mode dispatch)."""
        room_config = self.claims.get("roomConfig") or {}
        agents = room_config.get("agents") if isinstance(room_config, dict) else None
        return [a for a in agents or [] if isinstance(a, dict)]


class TokenFormatError(ValueError):
    """The string is not a JWT at all."""


def decode_unverified(token: str) -> dict[str, Any]:
    """The payload of a JWT, signature NOT checked."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenFormatError(f"a JWT has 3 dot-separated parts, this one has {len(parts)}")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (binascii.Error, ValueError) as exc:
        raise TokenFormatError(f"the JWT payload is not base64url JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TokenFormatError("the JWT payload is not a JSON object")
    return data


def check_claims(token: str, requested_room: str, now: float | None = None) -> ClaimsReport:
    """Decode `token` and list what would stop the caller from joining `requested_room`."""
    now = time.time() if now is None else now
    try:
        claims = decode_unverified(token)
    except TokenFormatError as exc:
        return ClaimsReport({}, [f"token is not a JWT: {exc}"])
    problems: list[str] = []
    warnings: list[str] = []
    video = claims.get("video")
    if not isinstance(video, dict):
        problems.append("no video grant: the token does not allow joining any room")
        video = {}
    if video.get("roomJoin") is not True:
        problems.append("video grant has no roomJoin: true")
    room = video.get("room")
    if room != requested_room:
        problems.append(
            f"video grant is for room {room!r}, not the requested room {requested_room!r} "
            "(the endpoint must use the room_name it receives)"
        )
    for grant in ("canPublish", "canSubscribe"):
        if video.get(grant) is False:
            problems.append(f"video grant sets {grant}: false (the caller must speak and listen)")
    if not claims.get("sub"):
        problems.append("no identity (sub claim)")
    exp = claims.get("exp")
    if isinstance(exp, int | float):
        if exp <= now:
            problems.append(f"token expired {now - exp:.0f} s ago")
        elif exp - now < SHORT_TTL_SECONDS:
            warnings.append(f"token expires in {exp - now:.0f} s; long simulations need more")
    else:
        warnings.append("token has no exp claim")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW_SECONDS:
        problems.append(f"token not valid for another {nbf - now:.0f} s (nbf; check clocks)")
    return ClaimsReport(claims, problems, warnings)
