"""Admin console: staff accounts and roles, the audit log, and canned replies."""

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from console import logins
from console.csrf import csrf_protect
from console.errors import not_found
from console.identity import Admin, require_admin
from console.pages import done, failed, form_int, redirect
from console.templating import ACTION_LABELS, render
from core.clock import utc
from core.settings import get_settings
from core.web import DbSession, RowId
from ticketing import assignment, flows, replies, service
from ticketing import staff as staff_service
from ticketing.models import ROLE_ADMIN, ROLES, StaffUser, Ticket, TicketEvent
from ticketing.service import TicketError
from ticketing.staff import StaffError

router = APIRouter(
    prefix="/console/admin", tags=["console-admin"], dependencies=[Depends(require_admin), Depends(csrf_protect)]
)
USERS_PATH = "/console/admin/users"
CANNED_PATH = "/console/admin/canned"
AUDIT_PAGE_SIZE = 100


@router.get("", response_class=Response)
def admin_home() -> Response:
    """The admin area starts at the accounts."""
    return redirect(USERS_PATH)


# --- users and roles -----------------------------------------------------------------------------------------


@router.get("/users", response_class=Response)
def users_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Every account with role, capacity, load, presence and state, and the form to add one."""
    context = {
        "users": staff_service.get_all(db_session=db_session),
        "loads": assignment.loads(db_session=db_session),
        "roles": ROLES,
        "default_capacity": get_settings().ticket_default_capacity,
        "min_password": staff_service.MIN_PASSWORD_CHARS,
    }
    return render(request, "admin_users.html", context)


@router.post("/users", response_class=Response)
def create_user(
    request: Request,
    user: Admin,
    db_session: DbSession,
    username: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "agent",
    capacity: Annotated[str, Form()] = "",
) -> Response:
    """Add an account with a first password."""
    try:
        created = staff_service.create(
            db_session=db_session,
            username=username,
            password=password,
            role=role,
            display_name=display_name.strip() or None,
            capacity=form_int(capacity) if capacity.strip() else None,
            actor_id=user.id,
        )
    except StaffError as exc:
        return failed(request, db_session, str(exc), USERS_PATH)
    return done(request, db_session, f"已创建账号 {created.username}", USERS_PATH)


def _target(db_session: Session, staff_id: int) -> StaffUser:
    found = staff_service.get(db_session=db_session, staff_id=staff_id)
    if found is None:
        raise not_found("账号不存在")
    return found


@router.post("/users/{staff_id}", response_class=Response)
def update_user(
    request: Request,
    staff_id: RowId,
    user: Admin,
    db_session: DbSession,
    display_name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    capacity: Annotated[str, Form()] = "",
) -> Response:
    """Change an account's display name, role and capacity (an admin cannot take away their own admin role)."""
    target = _target(db_session, staff_id)
    try:
        if display_name.strip():
            staff_service.set_display_name(
                db_session=db_session, staff_id=staff_id, display_name=display_name, actor_id=user.id
            )
        if role:
            if target.id == user.id and role != ROLE_ADMIN:
                raise StaffError("不能取消自己的管理员权限")
            staff_service.set_role(db_session=db_session, staff_id=staff_id, role=role, actor_id=user.id)
        if capacity.strip():
            value = form_int(capacity)
            if value is None:
                raise StaffError("接单上限须为非负整数")
            staff_service.set_capacity(db_session=db_session, staff_id=staff_id, capacity=value, actor_id=user.id)
    except StaffError as exc:
        return failed(request, db_session, str(exc), USERS_PATH)
    return done(request, db_session, f"已更新账号 {target.username}", USERS_PATH)


@router.post("/users/{staff_id}/password", response_class=Response)
def reset_password(
    request: Request, staff_id: RowId, user: Admin, db_session: DbSession, password: Annotated[str, Form()] = ""
) -> Response:
    """Set a new password; the account's existing logins end."""
    target = _target(db_session, staff_id)
    try:
        staff_service.set_password(db_session=db_session, staff_id=staff_id, password=password, actor_id=user.id)
    except StaffError as exc:
        return failed(request, db_session, str(exc), USERS_PATH)
    return done(request, db_session, f"已重置 {target.username} 的密码，其已登录的会话均已失效", USERS_PATH)


@router.post("/users/{staff_id}/disable", response_class=Response)
def disable_user(request: Request, staff_id: RowId, user: Admin, db_session: DbSession) -> Response:
    """Disable an account: its logins end and the tickets it held go back to the queue."""
    target = _target(db_session, staff_id)
    if target.id == user.id:
        return failed(request, db_session, "不能停用自己的账号", USERS_PATH)
    try:
        _, released = flows.disable_staff(db_session=db_session, staff_id=staff_id, actor_id=user.id)
    except (StaffError, TicketError) as exc:
        return failed(request, db_session, str(exc), USERS_PATH)
    return done(request, db_session, f"已停用 {target.username}，{len(released)} 张工单已退回队列", USERS_PATH)


@router.post("/users/{staff_id}/enable", response_class=Response)
def enable_user(request: Request, staff_id: RowId, user: Admin, db_session: DbSession) -> Response:
    """Let a disabled account log in again."""
    target = _target(db_session, staff_id)
    try:
        staff_service.enable(db_session=db_session, staff_id=staff_id, actor_id=user.id)
    except StaffError as exc:
        return failed(request, db_session, str(exc), USERS_PATH)
    return done(request, db_session, f"已启用 {target.username}", USERS_PATH)


# --- audit log -----------------------------------------------------------------------------------------------


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def _start_of(day: date) -> datetime:
    """Midnight of a local business date (TICKET_TIMEZONE), in UTC."""
    return utc(datetime.combine(day, time(0), tzinfo=ZoneInfo(get_settings().ticket_timezone)))


def audit_events(
    *,
    db_session: Session,
    actor_id: int | None = None,
    system_only: bool = False,
    action: str | None = None,
    ticket_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = AUDIT_PAGE_SIZE,
    offset: int = 0,
) -> list[TicketEvent]:
    """Audit events newest first, as service.get_events filters them, plus an end moment, "system only" (no actor)
    and paging."""
    if not system_only and until is None and offset == 0:
        return service.get_events(
            db_session=db_session,
            ticket_id=ticket_id,
            actor_id=actor_id,
            actions=[action] if action else None,
            since=since,
            limit=limit,
        )
    query = select(TicketEvent).order_by(TicketEvent.id.desc()).limit(limit).offset(offset)
    if ticket_id is not None:
        query = query.where(TicketEvent.ticket_id == ticket_id)
    if system_only:
        query = query.where(TicketEvent.actor_id.is_(None))
    elif actor_id is not None:
        query = query.where(TicketEvent.actor_id == actor_id)
    if action:
        query = query.where(TicketEvent.action == action)
    if since is not None:
        query = query.where(TicketEvent.created_at >= utc(since))
    if until is not None:
        query = query.where(TicketEvent.created_at < utc(until))
    return list(db_session.scalars(query))


@router.get("/audit", response_class=Response)
def audit_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Who did what when: filter by account (or the system), action, ticket and dates (business time zone)."""
    params = request.query_params
    actor = (params.get("actor") or "").strip()
    action = (params.get("action") or "").strip()[:32]
    ticket_text = (params.get("ticket") or "").strip()[:20]
    date_from, date_to = _day(params.get("from")), _day(params.get("to"))
    page = max(1, min(form_int(params.get("page")) or 1, 10_000))
    ticket_id = service.parse_number(ticket_text) if ticket_text else None
    events = audit_events(
        db_session=db_session,
        actor_id=form_int(actor),
        system_only=actor == "system",
        action=action or None,
        ticket_id=ticket_id,
        since=_start_of(date_from) if date_from else None,
        until=_start_of(date_to + timedelta(days=1)) if date_to else None,
        limit=AUDIT_PAGE_SIZE + 1,
        offset=(page - 1) * AUDIT_PAGE_SIZE,
    )
    filters = {
        "actor": actor,
        "action": action,
        "ticket": ticket_text,
        "from": date_from.isoformat() if date_from else "",
        "to": date_to.isoformat() if date_to else "",
    }
    known = set(db_session.scalars(select(TicketEvent.action).distinct()))
    ticket_ids = {event.ticket_id for event in events if event.ticket_id is not None}
    numbers = {
        ticket_id: number
        for ticket_id, number in (
            (t.id, t.number) for t in db_session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids)))
        )
    }

    def query_for(**changes: Any) -> str:
        return urlencode({k: v for k, v in {**filters, **changes}.items() if v})

    users = staff_service.get_all(db_session=db_session)
    context = {
        "events": events[:AUDIT_PAGE_SIZE],
        "filters": filters,
        "bad_ticket": bool(ticket_text) and ticket_id is None,
        "users": users,
        "names": {u.id: u.display_name for u in users},
        "actions": sorted(known | set(ACTION_LABELS)),
        "numbers": numbers,
        "previous_query": query_for(page=page - 1) if page > 1 else None,
        "next_query": query_for(page=page + 1) if len(events) > AUDIT_PAGE_SIZE else None,
    }
    return render(request, "admin_audit.html", context)


# --- canned replies ------------------------------------------------------------------------------------------


@router.get("/canned", response_class=Response)
def canned_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Every canned reply, the variables they may use, and the form to add one."""
    search = (request.query_params.get("q") or "").strip()[:100]
    context = {
        "canned": replies.list_canned(db_session=db_session, search=search or None),
        "q": search,
        "variables": replies.VARIABLES,
        "unknown": replies.unknown_variables,
    }
    return render(request, "admin_canned.html", context)


def _warn_unknown(request: Request, body: str) -> None:
    unknown = replies.unknown_variables(body)
    if unknown:
        names = "、".join("{" + name + "}" for name in unknown)
        logins.flash(request, f"注意：{names} 不是可用变量，发送时会原样显示", "error")


@router.post("/canned", response_class=Response)
def create_canned(
    request: Request,
    user: Admin,
    db_session: DbSession,
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    """Add a canned reply."""
    try:
        canned = replies.create_canned(db_session=db_session, title=title, body=body, actor_id=user.id)
    except TicketError as exc:
        return failed(request, db_session, str(exc), CANNED_PATH)
    _warn_unknown(request, canned.body)
    return done(request, db_session, f"已添加快捷回复「{canned.title}」", CANNED_PATH)


@router.get("/canned/{canned_id}", response_class=Response)
def edit_canned_page(request: Request, canned_id: RowId, user: Admin, db_session: DbSession) -> Response:
    """The form to change one canned reply."""
    canned = replies.get_canned(db_session=db_session, canned_id=canned_id)
    if canned is None:
        raise not_found("快捷回复不存在")
    context = {"item": canned, "variables": replies.VARIABLES, "unknown": replies.unknown_variables(canned.body)}
    return render(request, "admin_canned_edit.html", context)


@router.post("/canned/{canned_id}", response_class=Response)
def update_canned(
    request: Request,
    canned_id: RowId,
    user: Admin,
    db_session: DbSession,
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    """Change a canned reply's title and body."""
    back = f"{CANNED_PATH}/{canned_id}"
    try:
        canned = replies.update_canned(
            db_session=db_session, canned_id=canned_id, title=title, body=body, actor_id=user.id
        )
    except TicketError as exc:
        return failed(request, db_session, str(exc), back)
    _warn_unknown(request, canned.body)
    return done(request, db_session, f"已保存快捷回复「{canned.title}」", CANNED_PATH)


@router.post("/canned/{canned_id}/delete", response_class=Response)
def delete_canned(request: Request, canned_id: RowId, user: Admin, db_session: DbSession) -> Response:
    """Remove a canned reply."""
    if not replies.delete_canned(db_session=db_session, canned_id=canned_id, actor_id=user.id):
        raise not_found("快捷回复不存在")
    return done(request, db_session, "快捷回复已删除", CANNED_PATH)
