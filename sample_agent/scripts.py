"""The conversation scripts the offline responder follows: plain data plus one pure function.

This is a stand-in for an LLM, not an imitation of one: each script recognises a handful of
intents by keywords and answers them with fixed sentences, fills a booking's slots (party size,
day, time) over several turns, and otherwise asks a clarifying question naming what it can do.
`reply()` recomputes everything from the caller's turns so far, so the same conversation always
gets the same answers, and the framework's chat history is the only state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sample_agent.metadata import CallProfile


@dataclass(frozen=True)
class Intent:
    name: str
    patterns: tuple[str, ...]
    """Regexes matched against the lower-cased turn; any one is enough."""
    reply: str

    def matches(self, text: str) -> bool:
        return any(re.search(p, text) for p in self.patterns)


@dataclass(frozen=True)
class Script:
    name: str
    business: str
    greeting: str
    """Template: {persona} and {business} are filled in."""
    clarify: str
    intents: tuple[Intent, ...]
    booking: bool = False
    """Whether the script takes table bookings (slot filling over several turns)."""


_GOODBYE = Intent(
    "goodbye",
    (r"\b(bye|goodbye|that'?s all|that is all|nothing else|no,? thanks?|no thank you)\b",),
    "Thank you for calling. Goodbye!",
)
_THANKS = Intent("thanks", (r"^\W*(thanks|thank you)\b",), "You're welcome. Anything else?")
_HUMAN = Intent(
    "human",
    (r"\b(human|real person|operator|manager|representative)\b",),
    "I'm an automated assistant, and no one else is available on this line. "
    "I can still help with the things I know about.",
)

RESTAURANT = Script(
    name="restaurant",
    business="Bella Vista",
    greeting="Hello, thanks for calling {business}. This is {persona}. "
    "I can book a table or answer questions about the restaurant. How can I help?",
    clarify="Sorry, I didn't get that. I can book a table, or tell you our opening hours, "
    "our address or what is on the menu. Which would you like?",
    booking=True,
    intents=(
        _GOODBYE,
        _HUMAN,
        Intent(
            "cancel",
            (r"\bcancel",),
            "I can cancel that for you. The booking under your name is now cancelled. "
            "Anything else?",
        ),
        Intent(
            "hours",
            (r"\b(hours|open|opening|close|closing)\b",),
            "We are open every day from noon until ten in the evening, except Mondays.",
        ),
        Intent(
            "location",
            (r"\b(where|address|located|location|directions|parking)\b",),
            "We are at twelve Harbour Street, next to the old market. "
            "There is parking behind the building.",
        ),
        Intent(
            "menu",
            (r"\b(menu|vegetarian|vegan|gluten|dish|dishes|food|allerg\w*)\b",),
            "Our menu is Italian: fresh pasta, wood fired pizza and grilled fish. "
            "Every section has vegetarian dishes, and we can cook gluten free.",
        ),
        _THANKS,
    ),
)

SUPPORT = Script(
    name="support",
    business="Acme Support",
    greeting="Hi, you've reached {business}. My name is {persona}. What can I help you with?",
    clarify="Sorry, I'm not sure I understood. I can help with passwords, billing, "
    "orders and deliveries, or cancelling a subscription. Which one is it?",
    intents=(
        _GOODBYE,
        _HUMAN,
        Intent(
            "password",
            (r"\b(password|log ?in|sign ?in|locked out|account access)\b",),
            "I've sent a password reset link to the email on your account. "
            "It is valid for one hour.",
        ),
        Intent(
            "billing",
            (r"\b(bill|billing|invoice|charge[ds]?|refund|payment)\b",),
            "I can see your last invoice. Any refund goes back to your card "
            "within five working days.",
        ),
        Intent(
            "order",
            (r"\b(order|delivery|deliver|package|parcel|shipping|tracking)\b",),
            "Your latest order has shipped and should arrive within two days.",
        ),
        Intent(
            "cancel",
            (r"\bcancel",),
            "I've cancelled your subscription. It stays active until the end of this month.",
        ),
        _THANKS,
    ),
)

SALES = Script(
    name="sales",
    business="Acme",
    greeting="Hello, this is {persona} from {business}. Are you interested in our plans "
    "or in booking a demo?",
    clarify="Sorry, could you say that differently? I can tell you about pricing, "
    "book a demo or start a free trial.",
    intents=(
        _GOODBYE,
        _HUMAN,
        Intent(
            "pricing",
            (r"\b(price|prices|pricing|cost|costs|plan|plans|how much)\b",),
            "Our starter plan is twenty dollars a month and the team plan is fifty.",
        ),
        Intent(
            "demo",
            (r"\b(demo|demonstration|call back|meeting)\b",),
            "Great, I've booked a demo for you tomorrow at ten in the morning.",
        ),
        Intent(
            "trial",
            (r"\b(trial|try it|free)\b",),
            "You can try it free for fourteen days. I've sent the sign up link to your email.",
        ),
        _THANKS,
    ),
)

SCRIPTS: dict[str, Script] = {s.name: s for s in (RESTAURANT, SUPPORT, SALES)}
VARIANT_ALIASES = {
    "booking": "restaurant",
    "reservations": "restaurant",
    "default": "restaurant",
    "customer_support": "support",
    "helpdesk": "support",
}
DEFAULT_PERSONA = "Sam"

_BOOKING = Intent("booking", (r"\b(book|booking|reserve|reservation|table)\b",), "")

_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_NUM = r"(\d{1,2}|" + "|".join(_NUMBER_WORDS[1:]) + r")"
_PARTY = (
    re.compile(r"\b(?:for|of)\s+" + _NUM + r"\b(?!\s*(?:am|pm|a\.m|p\.m|o'?clock|:))"),
    re.compile(r"\b" + _NUM + r"\s+(?:people|persons|guests|of us|adults)\b"),
)
_DAY = re.compile(
    r"\b(today|tonight|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b"
)
_TIME = re.compile(
    r"\b(?:at|around|about)\s+"
    + _NUM
    + r"(?:[: ](\d{2}|thirty|fifteen|forty five|forty-five))?"
    + r"\s*(am|a\.m\.|pm|p\.m\.|in the evening|in the morning|o'?clock)?"
)
_MINUTE_WORDS = {"00": "", "15": "fifteen", "30": "thirty", "45": "forty five"}


def _number_word(token: str) -> str:
    if token.isdigit() and int(token) < len(_NUMBER_WORDS):
        return _NUMBER_WORDS[int(token)]
    return token


@dataclass
class _Booking:
    party: str | None = None
    day: str | None = None
    time: str | None = None

    def fill(self, text: str) -> bool:
        """Take whatever slots `text` mentions; True if it mentioned any."""
        found = False
        time_match = _TIME.search(text)
        if time_match:
            hour, minutes, suffix = time_match.groups()
            spoken = _number_word(hour)
            if minutes:
                spoken += " " + _MINUTE_WORDS.get(minutes, _number_word(minutes))
            if suffix and ("p" in suffix or "evening" in suffix):
                spoken += " in the evening"
            elif suffix and ("a" in suffix or "morning" in suffix):
                spoken += " in the morning"
            self.time, found = " ".join(spoken.split()), True
        for pattern in _PARTY:
            party = pattern.search(text)
            if party and (time_match is None or party.start() != time_match.start()):
                self.party, found = _number_word(party.group(1)), True
                break
        day = _DAY.search(text)
        if day:
            self.day, found = day.group(1), True
        return found

    def next_question(self) -> str | None:
        if self.party is None:
            return "For how many people?"
        if self.day is None:
            return "For which day?"
        if self.time is None:
            return "At what time?"
        return None

    def confirmation(self) -> str:
        day = self.day if self.day in ("today", "tonight", "tomorrow") else f"on {self.day}"
        return (
            f"All set: a table for {self.party} {day} at {self.time}. "
            "We look forward to seeing you. Anything else?"
        )


def script_for(profile: CallProfile) -> Script:
    """The variant's script; without one, a script the persona names ("support-agent"), else
    the restaurant."""
    if profile.variant:
        return SCRIPTS.get(VARIANT_ALIASES.get(profile.variant, profile.variant), RESTAURANT)
    persona = (profile.persona or "").lower()
    return next((s for name, s in SCRIPTS.items() if name in persona), RESTAURANT)


def agent_name(profile: CallProfile) -> str:
    """The name the agent introduces itself with: the persona if it is a name ("ava"), else
    the default (a persona like "restaurant-host" describes a role, not a name)."""
    persona = (profile.persona or "").strip()
    return persona.title() if re.fullmatch(r"[A-Za-z]+", persona) else DEFAULT_PERSONA


def greeting(profile: CallProfile) -> str:
    if profile.greeting:
        return profile.greeting
    script = script_for(profile)
    text = script.greeting.format(
        persona=agent_name(profile),
        business=profile.business_name or script.business,
    )
    if not profile.language.startswith("en"):
        text += f" I'm sorry, I can only speak English, not {profile.language}."
    return text


def reply(profile: CallProfile, user_turns: list[str]) -> str:
    """The agent's next line: the greeting before the caller has spoken, else the answer to the
    last turn given everything the caller has said."""
    turns = [t for t in (" ".join(t.split()) for t in user_turns) if t]
    if not turns:
        return greeting(profile)
    script = script_for(profile)
    booking: _Booking | None = None
    answer = script.clarify
    for turn in turns:
        text = turn.lower()
        intent = next((i for i in script.intents if i.matches(text)), None)
        if script.booking and intent is None and _BOOKING.matches(text):
            booking = _Booking()
            booking.fill(text)
            answer = "I'd be happy to book a table. " + (booking.next_question() or "")
        elif intent is not None:
            answer = intent.reply
            if intent.name in ("goodbye", "cancel"):
                booking = None
        elif booking is not None:
            understood = booking.fill(text)
            question = booking.next_question()
            if question is None:
                answer = booking.confirmation()
            elif understood:
                answer = question
            else:
                answer = "Sorry, I didn't catch that. " + question
        else:
            answer = script.clarify
        if booking is not None and booking.next_question() is None:
            answer, booking = booking.confirmation(), None
    return answer.strip()


def instructions(profile: CallProfile) -> str:
    """A system prompt for a real LLM playing the same part (AGENT_PROVIDER=openai); the
    offline responder ignores it."""
    script = script_for(profile)
    topics = ", ".join(i.name for i in script.intents if i.name not in ("goodbye", "thanks"))
    return (
        f"You are {agent_name(profile)}, the voice assistant of "
        f"{profile.business_name or script.business} ({script.name}). You help callers with: "
        f"{topics}{', table bookings' if script.booking else ''}. Open the call with: "
        f'"{greeting(profile)}" Answer in one or two short spoken sentences, no lists or '
        f"markdown. If you do not understand, ask a clarifying question. "
        f"Speak {profile.language}."
    )
