"""The console's live updates: a server-sent event stream of change notices for agents' pages (ids and kinds only;
pages fetch content through their usual routes), and "who else has this ticket open / is typing"."""

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Header, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from console.csrf import csrf_protect
from console.identity import Agent, current_staff, require_agent
from console.pages import checked
from core import events
from core.store import best_effort, get_store
from core.web import DbSession, RowId, sse_response
from ticketing import presence
from ticketing.models import StaffUser
from ticketing.service import TicketNotFound, require

router = APIRouter(prefix="/console", tags=["console"], dependencies=[Depends(require_agent), Depends(csrf_protect)])
# The stream checks the login itself, in one short database session on one thread: every page reconnecting at once
# (a restart) must not park sessions across threads of the pool (request-scoped sync dependencies would).
stream_router = APIRouter(prefix="/console", tags=["console"])

AGENT_KINDS = frozenset({events.TICKET, events.QUEUE, events.PRESENCE, events.RESYNC})
HEARTBEAT_SECONDS = 15.0
STREAM_SECONDS = 300.0  # then the browser reconnects (Last-Event-ID resumes), and the login is checked again
RETRY_MS = 1000  # a closed stream is opened again this soon (the page says 已断开 only after 3 s)


def _number(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) <= 18 else None


def page_seq() -> int:
    """The latest notice's number, for a page to resume its stream from (what changed while it loaded is sent)."""
    return best_effort(lambda: events.current(get_store()), 0, what="live notices")


async def _stream(after: int | None) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n: live\n\n"
    ends = time.monotonic() + STREAM_SECONDS
    async for notice in events.get_hub().listen(after=after, heartbeat_seconds=HEARTBEAT_SECONDS):
        if notice.kind == events.PING:
            yield ": ping\n\n"
        elif notice.kind in AGENT_KINDS:
            yield notice.as_sse()
        if time.monotonic() > ends:  # a closed connection ends the stream by itself (Starlette cancels it)
            return


@stream_router.get("/events", response_class=StreamingResponse)
async def live_events(
    request: Request, after: str | None = None, last_event_id: Annotated[str | None, Header()] = None
) -> StreamingResponse:
    """Change notices for agents' pages as server-sent events: ticket, queue, presence and resync (ids only), from
    after the notice number the browser last got (Last-Event-ID) or the page was rendered at (`after`)."""
    require_agent(request, await run_in_threadpool(current_staff, request))
    resume = _number(last_event_id)
    return sse_response(_stream(resume if resume is not None else _number(after)))


@router.post("/tickets/{ticket_id}/presence", response_class=Response)
def ticket_presence(
    ticket_id: RowId,
    user: Agent,
    db_session: DbSession,
    typing: Annotated[str, Form()] = "",
    leaving: Annotated[str, Form()] = "",
) -> Response:
    """The agent's open ticket page says it is still open (typing or not), or that it closed; 204."""
    try:
        require(db_session=db_session, ticket_id=ticket_id)
    except TicketNotFound:
        return Response(status_code=404)
    if presence.mark(agent_id=user.id, ticket_id=ticket_id, typing=checked(typing), leaving=checked(leaving)):
        events.publish(events.PRESENCE, str(ticket_id), agent_id=user.id)
    return Response(status_code=204)


def others_on_tickets(*, db_session: Session, user: StaffUser) -> dict[int, list[tuple[str, bool]]]:
    """Other agents who have a ticket open now, by ticket: (display name, typing)."""
    staff = dict(db_session.execute(select(StaffUser.id, StaffUser.display_name).where(StaffUser.active)).all())
    found: dict[int, list[tuple[str, bool]]] = {}
    for viewer in presence.viewers(agent_ids=[agent_id for agent_id in staff if agent_id != user.id]):
        found.setdefault(viewer.ticket_id, []).append((staff[viewer.agent_id], viewer.typing))
    return found
