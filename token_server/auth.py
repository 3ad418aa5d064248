"""Caller authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

The platform's `generate_token_headers` field sends whatever headers the customer configures, so
both spellings are accepted. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers

from token_server.config import Settings
from token_server.errors import ApiError


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def authenticate(settings: Settings, headers: Headers) -> None:
    """Raise 401 unless auth is off or the request carries one of the configured keys."""
    if not settings.auth_required:
        return
    key = presented_key(headers)
    if key is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Compare against every key so timing does not reveal which one came close.
    matched = False
    for expected in settings.api_keys:
        matched |= hmac.compare_digest(key.encode(), expected.encode())
    if not matched:
        raise ApiError(
            401, "unauthorized", "API key not recognised", headers={"WWW-Authenticate": "Bearer"}
        )
