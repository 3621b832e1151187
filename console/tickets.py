"""Agent console: the queue with filters and SLA countdowns, one ticket with its transcript and context, and every
ticket action (each through the ticketing services, with the logged-in account as the actor)."""

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from console import logins
from console.context import invoice_rows
from console.csrf import csrf_protect
from console.errors import forbidden, not_found, safe_next
from console.identity import Agent, require_agent
from console.live import others_on_tickets, page_seq
from console.pages import checked, form_int, redirect
from console.templating import render
from core.web import DbSession, RowId
from invoices import service as invoice_service
from invoices.explain import LABELS as INVOICE_LABELS
from knowledge.guides import get_guides
from knowledge.models import FaqEntry
from merchants import service as merchant_service
from ticketing import assignment, incidents, labels, lifecycle, queue, replies, service
from ticketing import staff as staff_service
from ticketing.models import ACTIVE, MERCHANT, PRIORITIES, ROLE_ADMIN, STATES, StaffUser, Ticket
from ticketing.service import TicketError, TicketNotFound
from ticketing.staff import StaffError

router = APIRouter(prefix="/console", tags=["console"], dependencies=[Depends(require_agent), Depends(csrf_protect)])
PAGE_SIZE = 50
TAG_SEPARATORS = re.compile(r"[,，、;；\n]+")
INVOICE_STATUS_LABELS = {str(status_): label for status_, label in INVOICE_LABELS.items()}


def _ticket_path(ticket_id: int) -> str:
    return f"/console/tickets/{ticket_id}"


def _is_admin(user: StaffUser) -> bool:
    return user.role == ROLE_ADMIN


def _require_ticket(db_session: Session, ticket_id: int) -> Ticket:
    try:
        return service.require(db_session=db_session, ticket_id=ticket_id)
    except TicketNotFound as exc:
        raise not_found(str(exc)) from exc


def _require_handler(db_session: Session, ticket_id: int, user: StaffUser) -> Ticket:
    """The ticket, when this account may act on it: its holder, any agent while unassigned, or an admin (else 403)."""
    ticket = _require_ticket(db_session, ticket_id)
    if ticket.assignee_id not in (None, user.id) and not _is_admin(user):
        raise forbidden(f"工单 {ticket.number} 已分配给其他客服，只有处理人或管理员可以操作")
    return ticket


def _act(request: Request, db_session: Session, action: Callable[[], Any], done: str, back: str) -> RedirectResponse:
    """Run one service call: commit and flash `done`, or roll back and flash the service's reason."""
    try:
        action()
    except (TicketError, StaffError) as exc:
        db_session.rollback()
        logins.flash(request, str(exc), "error")
    else:
        db_session.commit()
        logins.flash(request, done)
    return redirect(back)


# --- the queue -----------------------------------------------------------------------------------------------


@router.get("", response_class=Response)
def home() -> Response:
    """The console starts at the queue."""
    return redirect("/console/queue")


def _queue_filters(params: dict[str, str]) -> dict[str, Any]:
    """The queue's filters from the query string, unknown values dropped."""
    state = params.get("state", "")
    return {
        "state": state if state in (*STATES, "all") else "",
        "priority": params.get("priority", "") if params.get("priority") in PRIORITIES else "",
        "category": params.get("category", "").strip()[:64],
        "channel": params.get("channel", "").strip()[:32],
        "tag": params.get("tag", "").strip()[:32],
        "q": params.get("q", "").strip()[:100],
        "unassigned": checked(params.get("unassigned")),
        "overdue": checked(params.get("overdue")),
        "mine": checked(params.get("mine")),
        "order": params.get("order", "") if params.get("order") in queue.ORDERS else "priority",
    }


def _query_string(filters: dict[str, Any], **changes: Any) -> str:
    values = {**filters, **changes}
    return urlencode({k: ("1" if v is True else v) for k, v in values.items() if v not in ("", False, None)})


@router.get("/queue", response_class=Response)
def queue_page(request: Request, user: Agent, db_session: DbSession) -> Response:
    """Tickets by the chosen filters with SLA badges and countdowns, counts per state, presence and claim-next."""
    params = dict(request.query_params)
    filters = _queue_filters(params)
    page = max(1, min(form_int(params.get("page")) or 1, 10_000))
    states = {"": ACTIVE, "all": None}.get(filters["state"], (filters["state"],))
    items = queue.list_queue(
        db_session=db_session,
        states=states,
        assignee_id=user.id if filters["mine"] else None,
        unassigned=filters["unassigned"],
        priority=filters["priority"] or None,
        category=filters["category"] or None,
        channel=filters["channel"] or None,
        tag=filters["tag"] or None,
        search=filters["q"] or None,
        overdue=filters["overdue"],
        order=filters["order"],
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )
    context = {
        "items": items[:PAGE_SIZE],
        "filters": filters,
        "page": page,
        "previous_query": _query_string(filters, page=page - 1) if page > 1 else None,
        "next_query": _query_string(filters, page=page + 1) if len(items) > PAGE_SIZE else None,
        "query_for": lambda **changes: _query_string(filters, **changes),
        "counts": queue.queue_counts(db_session=db_session, agent_id=user.id),
        "load": assignment.load(db_session=db_session, agent_id=user.id),
        "tags": service.all_tags(db_session=db_session),
        "categories": list(db_session.scalars(select(Ticket.category).distinct().order_by(Ticket.category))),
        "channels": list(db_session.scalars(select(Ticket.channel).distinct().order_by(Ticket.channel))),
        "orders": queue.ORDERS,
        "open_incidents": incidents.open_incidents(db_session=db_session),
        "viewing": others_on_tickets(db_session=db_session, user=user),
        "live_seq": page_seq(),
    }
    return render(request, "queue.html", context)


@router.post("/presence", response_class=Response)
def presence(
    request: Request,
    user: Agent,
    db_session: DbSession,
    online: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Go online (round-robin assignment gives you tickets) or offline."""
    going_online = checked(online)
    done = "您已上线，将自动分配新工单" if going_online else "您已下线，不再自动分配新工单"
    return _act(
        request,
        db_session,
        lambda: staff_service.set_online(db_session=db_session, staff_id=user.id, online=going_online),
        done,
        safe_next(next),
    )


@router.post("/claim", response_class=Response)
def claim_next(request: Request, user: Agent, db_session: DbSession) -> Response:
    """Take the most urgent, oldest unassigned ticket."""
    try:
        ticket = assignment.claim_next(db_session=db_session, agent_id=user.id)
    except TicketError as exc:
        db_session.rollback()
        logins.flash(request, str(exc), "error")
        return redirect("/console/queue")
    if ticket is None:
        db_session.rollback()
        full = assignment.load(db_session=db_session, agent_id=user.id) >= user.capacity
        logins.flash(request, f"已达到接单上限（{user.capacity}）" if full else "暂无待分配的工单", "error")
        return redirect("/console/queue")
    db_session.commit()
    logins.flash(request, f"已领取工单 {ticket.number}")
    return redirect(_ticket_path(ticket.id))


# --- one ticket ----------------------------------------------------------------------------------------------


def _guide_progress(saved: Any) -> dict[str, Any] | None:
    """Where the merchant got to in a troubleshooting guide, in words: the guide's title, "第N步：<question>", how
    it stands and the answers given; None when there is no usable progress."""
    if not isinstance(saved, dict) or not isinstance(saved.get("guide"), str):
        return None
    guides = get_guides()
    guide = guides.get(saved["guide"])
    path = [entry for entry in saved.get("path") or [] if isinstance(entry, list) and len(entry) == 3]
    answers = []
    for guide_id, step_id, label in path:
        found = guides.get(guide_id)
        step = found.step(step_id) if found is not None else None
        answers.append((step.text if step is not None else "已回答的问题", label))
    values = saved.get("values") if isinstance(saved.get("values"), dict) else {}
    answers += [("商户发来", str(value)) for value in values.values()]
    step = guide.step(saved.get("step") or "") if guide is not None else None
    if saved.get("feedback"):
        status = "已给出解决办法，等待商户确认是否解决"
    elif saved.get("paused"):
        status = "商户中途问了别的，排查已暂停"
    else:
        status = ""
    return {
        "title": guide.title if guide is not None else "排查指南",
        "where": f"第{len(path) + 1}步：{step.text}" if step is not None else f"已回答 {len(path)} 个问题",
        "status": status,
        "answers": answers,
    }


def _merchant_context(db_session: Session, ticket: Ticket) -> dict[str, Any]:
    """What the console shows beside the transcript: merchant, FAQ topic, what the bot learned, the invoice."""
    context = ticket.context or {}
    merchant = (
        merchant_service.get(db_session=db_session, merchant_id=ticket.merchant_id) if ticket.merchant_id else None
    )
    topic = context.get("topic")
    faq = db_session.get(FaqEntry, topic) if isinstance(topic, str) and topic else None
    invoice = context.get("invoice") if isinstance(context.get("invoice"), dict) else None
    stored = None
    if invoice and invoice.get("number"):
        stored = invoice_service.get(db_session=db_session, code=invoice.get("code"), number=str(invoice["number"]))
    return {
        "merchant": merchant,
        "tax_ids": merchant_service.get_tax_ids(db_session=db_session, merchant_id=merchant.id) if merchant else [],
        "topic": topic,
        "faq": faq,
        "learned": context.get("learned") if isinstance(context.get("learned"), dict) else None,
        "guide": _guide_progress(context.get("guide")),
        "invoice": invoice,
        "stored_invoice": stored,
        "invoice_rows": invoice_rows(invoice, stored),
        "invoice_labels": INVOICE_STATUS_LABELS,
        "handoffs": context.get("handoffs") or [],
    }


def _split_bot_turns(
    lines: list[queue.TranscriptLine],
) -> tuple[list[queue.TranscriptLine], list[queue.TranscriptLine]]:
    """The conversation with the bot before the handoff (the copied turns that open the transcript, up to the
    merchant's last line among them, which stays in view), and the rest of the transcript."""
    run = 0
    while run < len(lines) and lines[run].source_turn_id is not None:
        run += 1
    asked = [n for n in range(run) if lines[n].author_kind == MERCHANT]
    cut = asked[-1] if asked else run
    return lines[:cut], lines[cut:]


def _ticket_page(
    request: Request,
    db_session: Session,
    user: StaffUser,
    ticket_id: int,
    *,
    draft: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        detail = queue.detail(db_session=db_session, ticket_id=ticket_id)
    except TicketNotFound as exc:
        raise not_found(str(exc)) from exc
    ticket = detail.ticket
    everyone = staff_service.get_all(db_session=db_session)
    filled = replies.render_all_canned(db_session=db_session, ticket_id=ticket_id, agent_id=user.id)
    bot_turns, conversation = _split_bot_turns(detail.transcript)
    context = {
        "d": detail,
        "ticket": ticket,
        "draft": draft,
        "reply_error": error,
        "canned": [canned for canned, _ in filled],
        "canned_filled": [{"id": canned.id, "title": canned.title, "text": text} for canned, text in filled],
        "bot_turns": bot_turns,
        "conversation": conversation,
        "watchers": others_on_tickets(db_session=db_session, user=user).get(ticket_id, []),
        "live_seq": page_seq(),
        "agents": [a for a in everyone if a.active],
        "names": {a.id: a.display_name for a in everyone},
        "loads": assignment.loads(db_session=db_session),
        "can_handle": ticket.assignee_id in (None, user.id) or _is_admin(user),
        "is_admin": _is_admin(user),
        "priorities": PRIORITIES,
        "open_incidents": incidents.open_incidents(db_session=db_session),
        **_merchant_context(db_session, ticket),
    }
    return render(request, "ticket.html", context, status_code=status_code)


@router.get("/tickets/{ticket_id}", response_class=Response)
def ticket_page(request: Request, ticket_id: RowId, user: Agent, db_session: DbSession) -> Response:
    """One ticket: transcript with delivery states, reply box (filled from a canned reply with ?canned=ID), notes,
    tags, SLA, context, actions and the events timeline."""
    draft = ""
    canned_id = form_int(request.query_params.get("canned"))
    if canned_id is not None:
        try:
            draft = replies.render_canned(
                db_session=db_session, canned_id=canned_id, ticket_id=ticket_id, agent_id=user.id
            )
        except TicketNotFound as exc:
            raise not_found(str(exc)) from exc
        except TicketError as exc:
            logins.flash(request, str(exc), "error")
    return _ticket_page(request, db_session, user, ticket_id, draft=draft)


@router.post("/tickets/{ticket_id}/reply", response_class=Response)
def reply(
    request: Request,
    ticket_id: RowId,
    user: Agent,
    db_session: DbSession,
    text: Annotated[str, Form()] = "",
    wait: Annotated[str, Form()] = "",
) -> Response:
    """Send a reply to the merchant through the outbox (refused, keeping the draft, when WeChat's window closed or an
    unassigned ticket would take the agent past their capacity: capacity bounds manual takes too, not only
    auto-assignment)."""
    _require_ticket(db_session, ticket_id)
    try:
        replies.send(
            db_session=db_session, ticket_id=ticket_id, agent_id=user.id, text=text, wait_for_merchant=checked(wait)
        )
    except replies.WindowClosed as exc:
        db_session.rollback()
        return _ticket_page(request, db_session, user, ticket_id, draft=text, error=str(exc), status_code=409)
    except assignment.AtCapacity as exc:
        db_session.rollback()
        error = f"回复未发送：{exc}，无法接下此工单。草稿已保留，请先解决或转出手上的工单，或请管理员分配。"
        return _ticket_page(request, db_session, user, ticket_id, draft=text, error=error, status_code=409)
    except TicketError as exc:
        db_session.rollback()
        return _ticket_page(request, db_session, user, ticket_id, draft=text, error=str(exc), status_code=400)
    db_session.commit()
    logins.flash(request, "回复已发送")
    return redirect(_ticket_path(ticket_id))


@router.post("/tickets/{ticket_id}/note", response_class=Response)
def note(
    request: Request, ticket_id: RowId, user: Agent, db_session: DbSession, text: Annotated[str, Form()] = ""
) -> Response:
    """Add an internal note."""
    _require_ticket(db_session, ticket_id)
    return _act(
        request,
        db_session,
        lambda: labels.add_note(db_session=db_session, ticket_id=ticket_id, author_id=user.id, text=text),
        "备注已添加",
        _ticket_path(ticket_id),
    )


@router.post("/tickets/{ticket_id}/tags", response_class=Response)
def tags(
    request: Request, ticket_id: RowId, user: Agent, db_session: DbSession, tags: Annotated[str, Form()] = ""
) -> Response:
    """Replace the ticket's tags (separated by commas, 、 or new lines)."""
    _require_ticket(db_session, ticket_id)
    wanted = [tag for tag in TAG_SEPARATORS.split(tags) if tag.strip()]
    return _act(
        request,
        db_session,
        lambda: labels.set_tags(db_session=db_session, ticket_id=ticket_id, tags=wanted, actor_id=user.id),
        "标签已更新",
        _ticket_path(ticket_id),
    )


@router.post("/tickets/{ticket_id}/take", response_class=Response)
def take(
    request: Request, ticket_id: RowId, user: Agent, db_session: DbSession, force: Annotated[str, Form()] = ""
) -> Response:
    """Take the ticket (admins may take it from another agent with `force`)."""
    _require_ticket(db_session, ticket_id)
    forced = checked(force) and _is_admin(user)
    return _act(
        request,
        db_session,
        lambda: assignment.take(db_session=db_session, ticket_id=ticket_id, agent_id=user.id, force=forced),
        "已接手此工单",
        _ticket_path(ticket_id),
    )


@router.post("/tickets/{ticket_id}/transfer", response_class=Response)
def transfer(
    request: Request,
    ticket_id: RowId,
    user: Agent,
    db_session: DbSession,
    to_agent_id: Annotated[str, Form()] = "",
    force: Annotated[str, Form()] = "",
) -> Response:
    """Hand the ticket to another agent (its holder or an admin; admins may ignore capacity)."""
    _require_ticket(db_session, ticket_id)
    target = form_int(to_agent_id)
    if target is None:
        logins.flash(request, "请选择要转交的客服", "error")
        return redirect(_ticket_path(ticket_id))
    forced = checked(force) and _is_admin(user)
    return _act(
        request,
        db_session,
        lambda: assignment.transfer(
            db_session=db_session, ticket_id=ticket_id, to_agent_id=target, actor_id=user.id, force=forced
        ),
        "工单已转交",
        _ticket_path(ticket_id),
    )


# Actions only the holder (or any agent while unassigned, or an admin) may take: path segment → (service, done).
HOLDER_ACTIONS: dict[str, tuple[Callable[..., Any], str]] = {
    "release": (assignment.release, "工单已退回队列"),
    "resolve": (lifecycle.resolve, "工单已标记为已解决，已邀请商户评分"),
    "close": (lifecycle.close, "工单已关闭"),
    "reopen": (lifecycle.reopen, "工单已重新打开"),
    "wait": (lifecycle.wait_for_merchant, "已标记为等待商户回复，SLA 计时暂停"),
    "resume": (lifecycle.resume, "已恢复处理，SLA 继续计时"),
    "hand-back": (lifecycle.hand_back_to_bot, "已转回智能助手，并已通知商户"),
}


def _holder_action(name: str) -> Callable[..., Response]:
    call, done = HOLDER_ACTIONS[name]

    def action(request: Request, ticket_id: RowId, user: Agent, db_session: DbSession) -> Response:
        _require_handler(db_session, ticket_id, user)
        return _act(
            request,
            db_session,
            lambda: call(db_session=db_session, ticket_id=ticket_id, actor_id=user.id),
            done,
            _ticket_path(ticket_id),
        )

    action.__name__ = name.replace("-", "_")
    action.__doc__ = f"{call.__name__} as the logged-in account (its holder, any agent while unassigned, or an admin)."
    return action


for _name in HOLDER_ACTIONS:
    router.add_api_route(
        f"/tickets/{{ticket_id}}/{_name}", _holder_action(_name), methods=["POST"], response_class=Response
    )


@router.post("/tickets/{ticket_id}/priority", response_class=Response)
def priority(
    request: Request, ticket_id: RowId, user: Agent, db_session: DbSession, priority: Annotated[str, Form()] = ""
) -> Response:
    """Change the priority (the SLA targets follow)."""
    _require_handler(db_session, ticket_id, user)
    return _act(
        request,
        db_session,
        lambda: labels.set_priority(db_session=db_session, ticket_id=ticket_id, priority=priority, actor_id=user.id),
        "优先级已更新",
        _ticket_path(ticket_id),
    )


@router.post("/tickets/{ticket_id}/category", response_class=Response)
def category(
    request: Request, ticket_id: RowId, user: Agent, db_session: DbSession, category: Annotated[str, Form()] = ""
) -> Response:
    """Change the category."""
    _require_handler(db_session, ticket_id, user)
    return _act(
        request,
        db_session,
        lambda: labels.set_category(db_session=db_session, ticket_id=ticket_id, category=category, actor_id=user.id),
        "分类已更新",
        _ticket_path(ticket_id),
    )
