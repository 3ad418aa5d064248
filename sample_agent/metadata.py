"""Turn a job's dispatch metadata into the call's profile: which script, persona and language.

The token endpoint dispatches with a JSON envelope (room and participant names, the configured
`agent_metadata` string, the caller's `requested_agent_metadata`, and its custom request fields).
The strings inside come from people's configuration, and the simulation platform's own docs show
a Python-style dict (`"{'role': 'assistant'}"`) as an example, so every string is parsed
leniently: JSON, else a Python literal dict, else plain text. Metadata from another dispatcher
(not the envelope at all) goes through the same parser. Nothing here raises on bad input; it
logs what it made of it instead.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger("sample_agent.metadata")

Format = Literal["empty", "json", "python", "text"]
ENVELOPE_KEYS = frozenset({"agent_metadata", "requested_agent_metadata", "custom"})

# Field names callers use for the same idea; the first is the canonical one.
_ALIASES: dict[str, tuple[str, ...]] = {
    "agent_variant": ("agent_variant", "variant", "scenario", "script"),
    "persona": ("persona", "agent_persona", "agent_display_name"),
    "language": ("language", "lang", "locale"),
    "business_name": ("business_name", "business", "company", "restaurant"),
    "greeting": ("greeting", "first_message"),
}


@dataclass(frozen=True)
class Parsed:
    """One metadata string and what the lenient parser made of it."""

    format: Format
    fields: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def parse_lenient(raw: str | None) -> Parsed:
    """JSON object, else a Python-literal dict, else plain text; never raises."""
    raw = (raw or "").strip()
    if not raw:
        return Parsed("empty")
    try:
        value = json.loads(raw)
    except ValueError:
        pass
    else:
        if isinstance(value, dict):
            return Parsed("json", fields=value)
        if isinstance(value, str):  # a JSON-quoted string is still just text
            return Parsed("text", text=value.strip())
    if raw[0] in "{[(":
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        else:
            if isinstance(value, dict):
                return Parsed("python", fields={str(k): v for k, v in value.items()})
    return Parsed("text", text=raw)


@dataclass(frozen=True)
class CallProfile:
    """What the agent knows about this call before anyone speaks."""

    variant: str | None = None
    persona: str | None = None
    language: str = "en"
    business_name: str | None = None
    greeting: str | None = None
    note: str | None = None
    """Plain-text metadata that named no known field; kept and logged, not acted on."""
    room_name: str | None = None
    participant_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other field, for customers who extend the responder."""


def _pick(fields: Mapping[str, Any], canonical: str) -> str | None:
    for name in _ALIASES[canonical]:
        value = fields.get(name)
        if isinstance(value, str | int | float) and str(value).strip():
            return str(value).strip()
    return None


def _merge_string(label: str, raw: Any, fields: dict[str, Any], notes: list[str]) -> None:
    if raw is None:
        return
    if isinstance(raw, dict):  # someone put an object where the contract says string
        parsed = Parsed("json", fields=raw)
    else:
        parsed = parse_lenient(str(raw))
    logger.info(
        "parsed %s as %s",
        label,
        parsed.format,
        extra={"fields": sorted(parsed.fields), "text": parsed.text[:80]},
    )
    fields.update(parsed.fields)
    if parsed.text:
        notes.append(parsed.text)


def profile_from_job_metadata(raw: str | None) -> CallProfile:
    """The call's profile from `ctx.job.metadata`, whatever shape it arrived in.

    Precedence, lowest first: the configured agent metadata, the metadata the caller asked for
    in its token request, then the caller's custom request fields."""
    outer = parse_lenient(raw)
    fields: dict[str, Any] = {}
    notes: list[str] = []
    room_name = participant_name = None
    if outer.format in ("json", "python") and ENVELOPE_KEYS & outer.fields.keys():
        logger.info("job metadata is the token endpoint's envelope (%s)", outer.format)
        env = outer.fields
        room_name = env.get("room_name") if isinstance(env.get("room_name"), str) else None
        participant_name = (
            env.get("participant_name") if isinstance(env.get("participant_name"), str) else None
        )
        _merge_string("agent_metadata", env.get("agent_metadata"), fields, notes)
        _merge_string(
            "requested_agent_metadata", env.get("requested_agent_metadata"), fields, notes
        )
        custom = env.get("custom")
        if isinstance(custom, dict):
            fields.update(custom)
    else:
        logger.info(
            "job metadata is not the token endpoint's envelope; read it as %s", outer.format
        )
        fields.update(outer.fields)
        if outer.text:
            notes.append(outer.text)

    variant = _pick(fields, "agent_variant")
    note = " | ".join(notes) or None
    if variant is None and note and len(note.split()) == 1:
        variant = note  # plain-text metadata of one word: most likely a variant name
    known = {alias for aliases in _ALIASES.values() for alias in aliases}
    profile = CallProfile(
        variant=variant.lower() if variant else None,
        persona=_pick(fields, "persona"),
        language=(_pick(fields, "language") or "en").lower(),
        business_name=_pick(fields, "business_name"),
        greeting=_pick(fields, "greeting"),
        note=note,
        room_name=room_name,
        participant_name=participant_name,
        extra={k: v for k, v in fields.items() if k not in known},
    )
    logger.info(
        "call profile",
        extra={
            "variant": profile.variant,
            "persona": profile.persona,
            "language": profile.language,
            "business_name": profile.business_name,
            "note": (profile.note or "")[:80],
            "extra_fields": sorted(profile.extra),
        },
    )
    return profile
