"""Who has a ticket open in the console right now, and who is typing a reply: short-lived marks in the store (one
record per agent, shared by every worker), renewed by the open page every few seconds."""

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.store import Store, best_effort, get_store

VIEWING_SECONDS = 30  # a page that stopped renewing its mark is gone after this long
TYPING_SECONDS = 6  # "正在输入" lasts this long after the last key press reported
clock: Callable[[], float] = time.time  # wall clock, shared by the workers (tests move it)


@dataclass(frozen=True)
class Viewer:
    """One agent on one ticket: viewing, maybe typing."""

    agent_id: int
    ticket_id: int
    typing: bool


def _key(agent_id: int) -> str:
    return f"presence:{agent_id}"


def _live(record: dict[str, list[float]], now: float) -> dict[str, list[float]]:
    return {
        ticket: marks
        for ticket, marks in record.items()
        if isinstance(marks, list)
        and len(marks) == 2
        and all(isinstance(m, int | float) for m in marks)
        and marks[0] > now
    }


def _load(raw: str | None) -> dict[str, list[float]]:
    try:
        loaded = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def mark(
    *, agent_id: int, ticket_id: int, typing: bool = False, leaving: bool = False, store: Store | None = None
) -> bool:
    """Note that the agent has the ticket open (typing or not), or left it; True when what others see changed."""
    store = store or get_store()
    now = clock()
    record = _live(_load(best_effort(lambda: store.get(_key(agent_id)), None, what="presence")), now)
    before = record.get(str(ticket_id))
    if leaving:
        record.pop(str(ticket_id), None)
    else:
        typing_until = now + TYPING_SECONDS if typing else 0.0
        record[str(ticket_id)] = [now + VIEWING_SECONDS, typing_until]
    after = record.get(str(ticket_id))
    best_effort(lambda: store.set(_key(agent_id), json.dumps(record), ttl=VIEWING_SECONDS), None, what="presence")
    was_typing = before is not None and before[1] > now
    return (before is None) != (after is None) or (after is not None and was_typing != (after[1] > now))


def viewers(*, agent_ids: Iterable[int], store: Store | None = None) -> list[Viewer]:
    """Every ticket each of these agents has open now, and whether they are typing in it."""
    store = store or get_store()
    ids = list(agent_ids)
    if not ids:
        return []
    now = clock()
    raws = best_effort(lambda: store.get_many([_key(agent_id) for agent_id in ids]), [None] * len(ids), what="presence")
    found = []
    for agent_id, raw in zip(ids, raws, strict=True):
        for ticket, marks in _live(_load(raw), now).items():
            if ticket.isdigit():
                found.append(Viewer(agent_id, int(ticket), marks[1] > now))
    return found
