"""Console login and logout with brute-force limits."""

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse, Response

from console import csrf, logins
from console.errors import safe_next
from console.identity import Agent, current_staff
from console.templating import render
from core.web import DbSession
from ticketing import staff as staff_service
from ticketing.models import StaffUser
from ticketing.service import record_event

MAX_USER_FAILURES = 5  # wrong passwords per username per window
MAX_IP_FAILURES = 20  # wrong passwords per client address per window (offices share one address)
FAILURE_WINDOW_SECONDS = 15 * 60
FAILURE_KEY = "console:login-failures:"
MAX_USERNAME_CHARS = 64
MAX_PASSWORD_CHARS = staff_service.MAX_PASSWORD_CHARS
WRONG_PASSWORD = "用户名或密码错误"
LOCKED = "登录失败次数过多，请 15 分钟后再试"

router = APIRouter(prefix="/console", tags=["console"])


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
    store = logins.get_store()
    by_user = store.incr(user_key, ttl=FAILURE_WINDOW_SECONDS)
    by_ip = store.incr(ip_key, ttl=FAILURE_WINDOW_SECONDS)
    return by_user <= MAX_USER_FAILURES and by_ip <= MAX_IP_FAILURES


def _forget_attempt(user_key: str, ip_key: str) -> None:
    """A successful login: the name starts afresh and the address is not charged for it."""
    store = logins.get_store()
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
    db_session: DbSession,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the name and password (at most MAX_USER_FAILURES wrong ones per name and MAX_IP_FAILURES per address
    in FAILURE_WINDOW_SECONDS), then open a new login with a new token."""
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
    old = logins.from_request(request)
    if old is not None:
        logins.delete(old.token)
    fresh = logins.create(user.id, user.password_hash)
    record_event(
        db_session=db_session,
        actor_id=user.id,
        action="staff_login",
        after={"staff_id": user.id, "ip": client_ip(request)},
    )
    db_session.commit()
    response = RedirectResponse(safe_next(next_path), status.HTTP_303_SEE_OTHER)
    logins.set_cookie(response, request, fresh)
    response.delete_cookie(csrf.LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout", response_class=Response, dependencies=[Depends(csrf.csrf_protect)])
def logout(
    request: Request,
    user: Agent,
    db_session: DbSession,
) -> Response:
    """End this browser's login."""
    login = logins.from_request(request)
    if login is not None:
        logins.delete(login.token)
    record_event(db_session=db_session, actor_id=user.id, action="staff_logout", after={"staff_id": user.id})
    db_session.commit()
    response = RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
    logins.clear_cookie(response, request)
    return response
