"""Console login and logout, sessions checked on every request, brute-force limits, and the role dependencies."""

import hashlib
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from bot.clock import utc
from bot.database import session_scope
from bot.deps import get_db
from ticketing import staff as staff_service
from ticketing.console import csrf, sessions
from ticketing.console.errors import forbidden, login_required, safe_next
from ticketing.console.templating import render
from ticketing.models import ROLE_ADMIN, ROLES, StaffUser
from ticketing.service import record_event

MAX_USER_FAILURES = 5  # wrong passwords per username per window
MAX_IP_FAILURES = 20  # wrong passwords per client address per window (offices share one address)
FAILURE_WINDOW_SECONDS = 15 * 60
FAILURE_KEY = "console:login-failures:"
TOUCH_SECONDS = 300  # last_seen_at is written at most this often
MAX_USERNAME_CHARS = 64
MAX_PASSWORD_CHARS = staff_service.MAX_PASSWORD_CHARS
WRONG_PASSWORD = "用户名或密码错误"
LOCKED = "登录失败次数过多，请 15 分钟后再试"

router = APIRouter(prefix="/console", tags=["console"])


# --- who is asking -------------------------------------------------------------------------------------------


def _valid_staff(db_session: Session, session: sessions.ConsoleSession) -> StaffUser | None:
    """The session's account while it is active and its password unchanged; notes that it was seen."""
    user = db_session.get(StaffUser, session.staff_id, populate_existing=True)
    if user is None or not user.active:
        return None
    if sessions.password_fingerprint(user.password_hash) != session.password:
        return None
    now = utc()
    if user.last_seen_at is None or utc(user.last_seen_at) < now - timedelta(seconds=TOUCH_SECONDS):
        user.last_seen_at = now
        db_session.flush()
    return user


def current_staff(request: Request, db_session: Annotated[Session | None, Depends(get_db)] = None) -> StaffUser | None:
    """The logged-in account, or None; a session whose account was disabled or whose password changed ends here.
    Each use slides the session's expiry. Callable outside FastAPI as current_staff(request)."""
    if hasattr(request.state, "console_staff"):
        return request.state.console_staff
    session = sessions.from_request(request)
    user = None
    if session is not None:
        if db_session is None:
            with session_scope() as own_session:
                user = _valid_staff(own_session, session)
        else:
            user = _valid_staff(db_session, session)
        if user is None:
            sessions.delete(session.token)
            request.state.console_session = None
        else:
            sessions.save(session)
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


# --- brute-force limits --------------------------------------------------------------------------------------


def client_ip(request: Request) -> str:
    """The client's address (behind a proxy, run uvicorn with --proxy-headers so this is the real one)."""
    return request.client.host if request.client else "unknown"


def _failure_keys(username: str, ip: str) -> tuple[str, str]:
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"{FAILURE_KEY}user:{name}", f"{FAILURE_KEY}ip:{ip}"


def _count_attempt(user_key: str, ip_key: str) -> bool:
    """Count a login attempt before checking it (atomic, so parallel guesses cannot slip past the limit); False when
    the name or the address has used up its attempts in this window."""
    store = sessions.get_store()
    by_user = store.incr(user_key, ttl=FAILURE_WINDOW_SECONDS)
    by_ip = store.incr(ip_key, ttl=FAILURE_WINDOW_SECONDS)
    return by_user <= MAX_USER_FAILURES and by_ip <= MAX_IP_FAILURES


def _forget_attempt(user_key: str, ip_key: str) -> None:
    """A successful login: the name starts afresh and the address is not charged for it."""
    store = sessions.get_store()
    store.delete(user_key)
    store.incr(ip_key, amount=-1, ttl=FAILURE_WINDOW_SECONDS)


# --- login and logout ----------------------------------------------------------------------------------------


def _login_page(request: Request, *, next_path: str, username: str = "", error: str | None = None, code: int = 200):
    token = csrf.login_token(request)
    context = {"login_csrf": token, "next": next_path, "username": username, "error": error}
    response = render(request, "login.html", context, status_code=code)
    csrf.set_login_cookie(response, request, token)
    if code == status.HTTP_429_TOO_MANY_REQUESTS:
        response.headers["Retry-After"] = str(FAILURE_WINDOW_SECONDS)
    return response


@router.get("/login", response_class=Response)
def login_form(request: Request, user: Annotated[StaffUser | None, Depends(current_staff)], next: str = "") -> Response:
    """The login page (straight on to `next` when already logged in)."""
    if user is not None:
        return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
    return _login_page(request, next_path=safe_next(next, default=""))


@router.post("/login", response_class=Response)
def login(
    request: Request,
    db_session: Annotated[Session, Depends(get_db)],
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the name and password (at most MAX_USER_FAILURES wrong ones per name and MAX_IP_FAILURES per address
    in FAILURE_WINDOW_SECONDS), then open a new session with a new id."""
    csrf.check_login_token(request, csrf_token)
    next_path = safe_next(next, default="")
    shown_name = username.strip()[:MAX_USERNAME_CHARS]
    user_key, ip_key = _failure_keys(username[:MAX_USERNAME_CHARS], client_ip(request))
    if not _count_attempt(user_key, ip_key):
        return _login_page(
            request, next_path=next_path, username=shown_name, error=LOCKED, code=status.HTTP_429_TOO_MANY_REQUESTS
        )
    user = None
    if len(username) <= MAX_USERNAME_CHARS and len(password) <= MAX_PASSWORD_CHARS:
        user = staff_service.authenticate(db_session=db_session, username=username, password=password)
    if user is None:
        return _login_page(
            request, next_path=next_path, username=shown_name, error=WRONG_PASSWORD, code=status.HTTP_401_UNAUTHORIZED
        )
    _forget_attempt(user_key, ip_key)
    old = sessions.from_request(request)
    if old is not None:
        sessions.delete(old.token)
    session = sessions.create(user.id, user.password_hash)
    record_event(
        db_session=db_session,
        actor_id=user.id,
        action="staff_login",
        after={"staff_id": user.id, "ip": client_ip(request)},
    )
    db_session.commit()
    response = RedirectResponse(safe_next(next_path), status.HTTP_303_SEE_OTHER)
    sessions.set_cookie(response, request, session)
    response.delete_cookie(csrf.LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout", response_class=Response, dependencies=[Depends(csrf.csrf_protect)])
def logout(
    request: Request,
    user: Annotated[StaffUser, Depends(require_agent)],
    db_session: Annotated[Session, Depends(get_db)],
) -> Response:
    """End this browser's session."""
    session = sessions.from_request(request)
    if session is not None:
        sessions.delete(session.token)
    record_event(db_session=db_session, actor_id=user.id, action="staff_logout", after={"staff_id": user.id})
    db_session.commit()
    response = RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
    sessions.clear_cookie(response, request)
    return response
