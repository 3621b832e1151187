"""What console pages share: redirects after a form, commit-and-flash, form values, the audit event, the page frame."""

from typing import Any

from fastapi import Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from console import logins
from console.templating import render
from ticketing import incidents
from ticketing import service as ticket_service
from ticketing import staff as staff_service
from ticketing.models import StaffUser

BASE = "/console/admin"


def author(user: StaffUser) -> str:
    """How a staff account is named in FAQ versions and unanswered resolutions."""
    return f"staff:{user.id}"


def author_names(db_session: Session) -> dict[str, str]:
    """Version authors as shown: "staff:<id>" by display name; api, cli, seed, import and migration in words."""
    names = {"api": "接口", "cli": "命令行", "seed": "初始数据", "import": "导入", "migration": "升级前"}
    names.update({author(u): u.display_name for u in staff_service.get_all(db_session=db_session)})
    return names


def audit(
    db_session: Session,
    user: StaffUser,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Record an admin action in the audit log (the ticketing events, without a ticket)."""
    ticket_service.record_event(db_session=db_session, action=action, actor_id=user.id, before=before, after=after)


def redirect(path: str) -> RedirectResponse:
    """See other: after a form post."""
    return RedirectResponse(path, status.HTTP_303_SEE_OTHER)


def done(request: Request, db_session: Session, text: str, back: str) -> RedirectResponse:
    """Commit, say so, go back."""
    db_session.commit()
    logins.flash(request, text)
    return redirect(back)


def failed(request: Request, db_session: Session, text: str, back: str) -> RedirectResponse:
    """Roll back, say why, go back."""
    db_session.rollback()
    logins.flash(request, text, "error")
    return redirect(back)


def page(request: Request, db_session: Session, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """Render a page with the open incidents for the banner."""
    values = {"open_incidents": incidents.open_incidents(db_session=db_session), **context}
    return render(request, name, values, status_code=status_code)


def form_int(value: str | None) -> int | None:
    """A form or query value as a positive int, None when it is not one."""
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) <= 12 else None


def checked(value: str | None) -> bool:
    """A checkbox or flag value: true for 1, true, on, yes."""
    return (value or "").strip().lower() in ("1", "true", "on", "yes")


def int_param(value: str | None, default: int, low: int, high: int) -> int:
    """A bounded integer from a query parameter."""
    value = (value or "").strip()
    return max(low, min(int(value), high)) if value.isdigit() and len(value) <= 6 else default
