"""A ticket's subject: the merchant's first message that states a problem, with private data masked."""

import re
from collections.abc import Iterable
from typing import Any

from core.redact import mask_private
from core.text import fold

MAX_SUBJECT_CHARS = 80
# Bot replies that show the merchant's message asked nothing about a problem.
NOISE_INTENTS = frozenset({"greeting", "binding", "smalltalk", "human", "throttled"})
_BINDING = re.compile(r"^(我要|我想|申请|帮我|请)?(绑定|綁定|bangding|关联|解绑|解除绑定)")
_PAYLOAD = re.compile(r"^[a-z_]+:[\w:.-]*$")  # an option's payload ("intent:handoff", "faq:busy_server")
_CHOICE = re.compile(r"^\d{1,2}$")  # an option picked by its number
_PERSON = re.compile(
    r"^(你好|您好|在吗|喂)?[，,。 ]*(我要|我想|我需要|请|帮我|麻烦)?(转|找|接|要|换)?"
    r"(人工客服|人工服务|人工|真人|客服|工作人员)(服务)?[吧呢啊呀吗了！!。.，, ]*"
)
_GREETING = re.compile(r"^(你好|您好|hi|hello|在吗|在不在|有人吗|有人在吗|哈喽|嗨)[呀啊吗呢！!。.？? ]*$")
_COURTESY = re.compile(r"^(谢谢|多谢|好的|好|嗯|ok|收到|明白了|知道了)+[呀啊了！!。.～~ ]*$")
MIN_QUESTION_CHARS = 2


def question(text: str) -> str:
    """What of a merchant message states a problem ("转人工，发票开不出来" → "发票开不出来"); "" for a greeting, a
    binding command, a bare request for a person, an option payload or a thank-you."""
    text = text.strip()
    folded = fold(text)
    if not folded or _BINDING.match(folded) or _PAYLOAD.match(folded) or _CHOICE.match(folded):
        return ""
    person = _PERSON.match(text.lower())
    rest = text[person.end() :].strip(" ，,。.！!") if person else text
    if len(rest) < MIN_QUESTION_CHARS or _GREETING.match(fold(rest)) or _COURTESY.match(fold(rest)):
        return ""
    return rest


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
