"""CSRF defence for console forms: a per-login token in every state-changing request, and no cross-site POSTs."""

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request, Response

from console import logins
from console.errors import SAFE_METHODS, ConsoleError, forbidden, login_required

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
LOGIN_COOKIE = "ma_login_csrf"  # double-submit token of the login form (there is no login yet)
SAME_SITE_FETCHES = frozenset({"same-origin", "none"})


def check_origin(request: Request) -> None:
    """403 for a request a browser says comes from another site (Sec-Fetch-Site, else Origin against the Host, or the
    X-Forwarded-Host a reverse proxy set; browsers cannot add that header to a cross-site form)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in SAME_SITE_FETCHES:
        raise forbidden("拒绝来自其他网站的请求")
    origin = request.headers.get("origin")
    if origin is None:
        return
    hosts = {request.headers.get(name, "").lower() for name in ("host", "x-forwarded-host")} - {""}
    if origin == "null" or urlsplit(origin).netloc.lower() not in hosts:
        raise forbidden("拒绝来自其他网站的请求")


async def submitted_token(request: Request) -> str:
    """The token the request carries: the X-CSRF-Token header, else the csrf_token form field ("" when neither)."""
    header = request.headers.get(HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(FIELD)
        return value if isinstance(value, str) else ""
    return ""


def tokens_match(given: str, expected: str | None) -> bool:
    """Constant-time comparison; never true for an empty token."""
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())


async def csrf_protect(request: Request) -> None:
    """Dependency for every state-changing console route: same-site request and the login's CSRF token, else 403
    (401 without a login). Safe methods pass."""
    if request.method in SAFE_METHODS:
        return
    login = logins.from_request(request)
    if login is None:
        raise login_required(request)
    check_origin(request)
    if not tokens_match(await submitted_token(request), login.csrf):
        raise ConsoleError(403, "页面已过期或请求无效，请刷新页面后重试")


def page_token(request: Request) -> str | None:
    """The CSRF token forms on this request's pages carry (None without a login)."""
    login = logins.from_request(request)
    return login.csrf if login is not None else None


def login_token(request: Request) -> str:
    """The login form's token: the browser's current one, or a new one (set it with `set_login_cookie`)."""
    current = request.cookies.get(LOGIN_COOKIE, "")
    return current if 20 <= len(current) <= 100 else secrets.token_urlsafe(32)


def set_login_cookie(response: Response, request: Request, token: str) -> None:
    """Give the browser the login form's double-submit token."""
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/console/login",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def check_login_token(request: Request, given: str) -> None:
    """403 unless the login form's field matches its cookie and the request is same-site."""
    check_origin(request)
    if not tokens_match(given, request.cookies.get(LOGIN_COOKIE)):
        raise ConsoleError(403, "登录页面已过期，请刷新页面后重试（需要启用 Cookie）")
