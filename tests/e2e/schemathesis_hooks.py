"""Schemathesis hooks for the run against the live token endpoint (SCHEMATHESIS_HOOKS=<this>).

One kind of failure is dropped, and only that one: "invalid data accepted" for a body that sends
both spellings of a field (`room_name` and `roomName`) with one value and is valid once the second
spelling is removed. The endpoint accepts it by design (the values agree) and refuses differing
ones (400 `conflicting_fields`); JSON Schema cannot compare two values, so the document allows
one spelling. Every other failure is kept.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import schemathesis
from schemathesis.core.failures import AcceptedNegativeData

from token_server.openapi import documented_settings, openapi_document
from token_server.token_request import ALIASES

_DOCUMENT = openapi_document(documented_settings())
TOKEN_REQUEST = jsonschema_rs.Draft202012Validator(
    {"$ref": "#/components/schemas/TokenRequest", "components": _DOCUMENT["components"]}
)


def accepted_by_design(body: Any) -> bool:
    """Whether `body` repeats some field under a second spelling with the same value, and is
    valid without the repeats."""
    if not isinstance(body, dict):
        return False
    single = dict(body)
    for spellings in ALIASES.values():
        present = [key for key in spellings if key in body]
        if len(present) > 1 and all(body[key] == body[present[0]] for key in present):
            for key in present[1:]:
                del single[key]
    return single != body and TOKEN_REQUEST.is_valid(single)


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: Any,
    case: schemathesis.Case,
    response: schemathesis.Response,
) -> bool:
    return not (isinstance(failure, AcceptedNegativeData) and accepted_by_design(case.body))
