"""Who is asking: the logged-in staff account behind a console request, and the role dependencies."""

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from console import logins
from console.errors import forbidden, login_required
from core.clock import utc
from core.database import session_scope
from core.web import DbDepends
from ticketing.models import ROLE_ADMIN, ROLES, StaffUser

TOUCH_SECONDS = 300  # last_seen_at is written at most this often


def _valid_staff(db_session: Session, login: logins.StaffLogin) -> StaffUser | None:
    """The login's account while it is active and its password unchanged; notes that it was seen."""
    user = db_session.get(StaffUser, login.staff_id, populate_existing=True)
    if user is None or not user.active:
        return None
    if logins.password_fingerprint(user.password_hash) != login.password:
        return None
    now = utc()
    if user.last_seen_at is None or utc(user.last_seen_at) < now - timedelta(seconds=TOUCH_SECONDS):
        user.last_seen_at = now
        db_session.flush()
    return user


def current_staff(request: Request, db_session: Annotated[Session | None, DbDepends] = None) -> StaffUser | None:
    """The logged-in account, or None; a login whose account was disabled or whose password changed ends here.
    Each use slides the login's expiry. Callable outside FastAPI as current_staff(request)."""
    if hasattr(request.state, "console_staff"):
        return request.state.console_staff
    login = logins.from_request(request)
    user = None
    if login is not None:
        if db_session is None:
            with session_scope() as own_session:
                user = _valid_staff(own_session, login)
        else:
            user = _valid_staff(db_session, login)
        if user is None:
            logins.delete(login.token)
            request.state.staff_login = None
        else:
            logins.save(login)
    request.state.console_staff = user
    return user


def require_agent(request: Request, user: Annotated[StaffUser | None, Depends(current_staff)]) -> StaffUser:
    """An agent or admin; anonymous page views go to the login page (other methods get 401)."""
    if user is None:
        raise login_required(request)
    if user.role not in ROLES:
        raise forbidden()
    return user


def require_admin(user: Annotated[StaffUser, Depends(require_agent)]) -> StaffUser:
    """An admin; 403 for agents."""
    if user.role != ROLE_ADMIN:
        raise forbidden("此页面仅限管理员访问")
    return user


Agent = Annotated[StaffUser, Depends(require_agent)]
Admin = Annotated[StaffUser, Depends(require_admin)]
