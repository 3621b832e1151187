"""Reply → WeChat text: numbered options, byte-limited parts and safe passive-reply XML."""

from collections.abc import Iterable, Mapping
from typing import Any

from wechatpy.replies import TextReply

from core.messages import Reply

# Passive replies are limited to 2048 UTF-8 bytes (community-sourced, see channels.md A4).
PASSIVE_LIMIT_BYTES = 2048
# 客服 API text messages: stay a little under the passive limit to be safe.
CUSTOM_LIMIT_BYTES = 2000
CHOOSE_HINT = "回复数字选择"


def options_text(text: str, labels: Iterable[str]) -> str:
    """Text followed by numbered options "1. …" and the hint line, when there are options."""
    labels = list(labels)
    if not labels:
        return text
    lines = [text, ""] if text else []
    lines += [f"{number}. {label}" for number, label in enumerate(labels, 1)]
    lines.append(CHOOSE_HINT)
    return "\n".join(lines)


def reply_text(reply: Reply) -> str:
    """A Reply as WeChat text."""
    return options_text(reply.text, (option.label for option in reply.options))


def payload_text(payload: Mapping[str, Any]) -> str:
    """An outbox payload ({"text", "options": [{"label", "payload"}]}) as WeChat text."""
    options = payload.get("options") or []
    return options_text(str(payload.get("text") or ""), (str(option["label"]) for option in options))


def utf8_len(text: str) -> int:
    """Length in UTF-8 bytes."""
    return len(text.encode("utf-8"))


def _cut(text: str, limit: int) -> tuple[str, str]:
    """Split text at the last whole character within `limit` bytes."""
    head = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
    return head, text[len(head) :]


def split_text(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` UTF-8 bytes, cut at line boundaries where possible, never inside a character."""
    if limit < 4:
        raise ValueError("limit must hold at least one character")
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if utf8_len(candidate) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        while utf8_len(line) > limit:
            head, line = _cut(line, limit)
            parts.append(head)
        current = line
    if current:
        parts.append(current)
    return [part.strip("\n") for part in parts if part.strip()]


def split_passive(text: str) -> tuple[str, str]:
    """The first part that fits one passive reply, and the rest (empty when everything fits)."""
    if utf8_len(text) <= PASSIVE_LIMIT_BYTES:
        return text, ""
    first = split_text(text, PASSIVE_LIMIT_BYTES)[0]
    rest = text[text.index(first) + len(first) :].strip("\n")
    return first, rest


def truncate(text: str, limit: int, note: str) -> str:
    """Text cut to `limit` bytes, ending with `note` when anything was cut."""
    if utf8_len(text) <= limit:
        return text
    return split_text(text, limit - utf8_len(note) - 1)[0] + "\n" + note


def neutralise_cdata(text: str) -> str:
    """Make `]]>` harmless inside a CDATA section by splitting it across two sections."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def text_xml(*, to_user: str, from_user: str, content: str) -> str:
    """A passive text reply as XML."""
    reply = TextReply(
        source=neutralise_cdata(from_user), target=neutralise_cdata(to_user), content=neutralise_cdata(content)
    )
    return reply.render()
