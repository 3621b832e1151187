"""Outbox payload → Telegram messages: text parts under the length limit and an inline keyboard of options."""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import InlineKeyboardButtonLimit, MessageLimit

# Telegram counts message length in UTF-16 code units; counting the same way keeps astral characters safe.
MAX_TEXT = MessageLimit.MAX_TEXT_LENGTH  # 4096
MAX_CALLBACK_BYTES = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA  # 64 UTF-8 bytes
BUTTON_LABEL_CHARS = 40
CALLBACK_PREFIX = "opt:"
CHOOSE_PROMPT = "请选择："
_CALLBACK = re.compile(r"^opt:([1-9][0-9]{0,2})$")
# Where an over-long line may be cut: after sentence punctuation or whitespace.
_BREAKS = "。！？；，、.!?;, \t"


@dataclass(frozen=True)
class Outgoing:
    """One sendMessage call: text and, for the last part, the keyboard."""

    text: str
    reply_markup: InlineKeyboardMarkup | None = None


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(line: str, limit: int) -> int:
    """How many characters of `line` fit in `limit` UTF-16 units."""
    used = 0
    for index, char in enumerate(line):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(line)


def _cut_line(line: str, limit: int) -> list[str]:
    """Pieces of one over-long line, cut after punctuation or a space when one is in the second half."""
    pieces = []
    while utf16_len(line) > limit:
        end = _fit(line, limit)
        soft = max(line.rfind(mark, 0, end) for mark in _BREAKS) + 1
        cut = soft if soft > end // 2 else end
        pieces.append(line[:cut])
        line = line[cut:]
    return [*pieces, line]


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Parts of at most `limit` UTF-16 units, cut at line boundaries where possible, never inside a character."""
    if limit < 2:
        raise ValueError("limit must hold at least one character")
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        for piece in _cut_line(line, limit):
            candidate = f"{current}\n{piece}" if current else piece
            if utf16_len(candidate) <= limit:
                current = candidate
                continue
            parts.append(current)
            current = piece
    parts.append(current)
    return [part.strip("\n") for part in parts if part.strip()]


def callback_data(number: int) -> str:
    """The callback_data of the button for option `number` (1-based)."""
    data = f"{CALLBACK_PREFIX}{number}"
    if len(data.encode("utf-8")) >= MAX_CALLBACK_BYTES:
        raise ValueError("callback_data too long")
    return data


def option_number(data: str | None) -> int | None:
    """The option number a button's callback_data stands for ("opt:2" → 2); None for anything else."""
    match = _CALLBACK.match(data or "")
    return int(match.group(1)) if match else None


def button_label(number: int, label: str, limit: int = BUTTON_LABEL_CHARS) -> str:
    """ "N. label", the label shortened with "…" when longer than `limit` characters."""
    label = " ".join(label.split())
    if len(label) > limit:
        label = label[: limit - 1].rstrip() + "…"
    return f"{number}. {label}"


def keyboard(labels: Iterable[str]) -> InlineKeyboardMarkup | None:
    """One button per option, one per row; None without options."""
    rows = [
        [InlineKeyboardButton(button_label(number, label), callback_data=callback_data(number))]
        for number, label in enumerate(labels, 1)
    ]
    return InlineKeyboardMarkup(rows) if rows else None


def render(payload: Mapping[str, Any]) -> list[Outgoing]:
    """An outbox payload ({"text", "options": [{"label", "payload"}]}) as messages; keyboard on the last only."""
    labels = [str(option["label"]) for option in payload.get("options") or []]
    markup = keyboard(labels)
    parts = split_text(str(payload.get("text") or ""))
    if not parts:
        parts = [CHOOSE_PROMPT] if markup else []
    return [Outgoing(part, markup if index == len(parts) - 1 else None) for index, part in enumerate(parts)]
