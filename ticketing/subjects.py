"""A ticket's subject: the merchant's first message that states a problem, with private data masked."""

import re
from collections.abc import Iterable
from typing import Any

from core.identifiers.binding import is_binding_command
from core.redact import mask_private
from core.text import fold
from knowledge import wording

MAX_SUBJECT_CHARS = 80
# Bot replies that show the merchant's message asked nothing about a problem.
NOISE_INTENTS = frozenset({"greeting", "binding", "smalltalk", "human", "throttled"})
_PAYLOAD = re.compile(r"^[a-z_]+:[\w:.-]*$")  # an option's payload ("intent:handoff", "faq:busy_server")
_CHOICE = re.compile(r"^\d{1,2}$")  # an option picked by its number
_PERSON = re.compile(
    r"^(你好|您好|在吗|喂)?[，,。 ]*(我要|我想|我需要|请|帮我|麻烦)?(转|找|接|要|换)?"
    r"(人工客服|人工服务|人工|真人|客服|工作人员)(服务)?[吧呢啊呀吗了！!。.，, ]*"
)
MIN_QUESTION_CHARS = 2
MAX_BARE_REQUEST_CHARS = 8  # a longer message that asks for someone says why too


def _idle(text: str) -> bool:
    """A greeting, thanks, an "ok", a goodbye, emoji or "有人吗": nothing asked."""
    return wording.is_greeting(text) or wording.is_courtesy(text) or wording.is_nudge(text)


def question(text: str) -> str:
    """What of a merchant message states a problem ("转人工，发票开不出来" → "发票开不出来"); "" for a greeting, a
    binding command, a bare request for a person, an option payload or a thank-you."""
    text = text.strip()
    folded = fold(text)
    if not folded or is_binding_command(folded) or _PAYLOAD.match(folded) or _CHOICE.match(folded) or _idle(text):
        return ""
    if not wording.wants_person(text):
        return text
    person = _PERSON.match(text.lower())
    if person is None:  # "找你们领导" asks for someone; "我要投诉，发票三天没开出来" says why
        return text if len(folded) > MAX_BARE_REQUEST_CHARS else ""
    rest = text[person.end() :].strip(" ，,。.！!")
    return "" if len(rest) < MIN_QUESTION_CHARS or _idle(rest) else rest


def pick(lines: Iterable[tuple[str, str | None]], learned: dict[str, Any] | None = None) -> str:
    """The subject: what the bot learned, else the first merchant message (with the intent the bot gave it) that
    states a problem; tax ids, phone numbers and binding codes masked."""
    if learned and learned.get("title"):
        return mask_private(str(learned["title"]))[:MAX_SUBJECT_CHARS]
    for text, intent in lines:
        if intent in NOISE_INTENTS:
            continue
        found = question(text)
        if found:
            return mask_private(found)[:MAX_SUBJECT_CHARS]
    return ""
