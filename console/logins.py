"""Staff logins to the console in the Store (`console:session:{token}`), their cookie, and one-time flash messages."""

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass

from fastapi import Request, Response

from core import store as store_module
from core.store import Store

COOKIE = "ma_session"
KEY = "console:session:"
FLASH_KEY = "console:flash:"
TTL_SECONDS = 12 * 3600  # idle time after which a login ends (sliding)
MAX_AGE_SECONDS = 7 * 24 * 3600  # a login ends this long after login, however busy
FLASH_TTL_SECONDS = 300
MAX_FLASHES = 10


@dataclass(frozen=True)
class StaffLogin:
    """One logged-in browser: whose it is, its CSRF token, the password it was opened with (fingerprint) and when."""

    token: str
    staff_id: int
    csrf: str
    password: str
    created: float

    def data(self) -> dict:
        """The stored value (without the token, which is the key)."""
        values = asdict(self)
        values.pop("token")
        return values


def get_store() -> Store:
    """The process-wide store (a seam for tests)."""
    return store_module.get_store()


def password_fingerprint(password_hash: str) -> str:
    """A short digest of the account's password hash: a password change ends sessions opened with the old one."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:24]


def create(staff_id: int, password_hash: str) -> StaffLogin:
    """Open a new login with a fresh random token and CSRF token."""
    login = StaffLogin(
        token=secrets.token_urlsafe(32),
        staff_id=staff_id,
        csrf=secrets.token_urlsafe(32),
        password=password_fingerprint(password_hash),
        created=time.time(),
    )
    save(login)
    return login


def save(login: StaffLogin) -> None:
    """Store the login for another TTL_SECONDS (the sliding expiry)."""
    get_store().set(KEY + login.token, json.dumps(login.data()), ttl=TTL_SECONDS)


def load(token: str | None) -> StaffLogin | None:
    """The live login for a cookie value, or None (unknown, expired, malformed or past MAX_AGE_SECONDS)."""
    if not token or len(token) > 128:
        return None
    raw = get_store().get(KEY + token)
    if raw is None:
        return None
    try:
        values = json.loads(raw)
        login = StaffLogin(
            token=token,
            staff_id=int(values["staff_id"]),
            csrf=str(values["csrf"]),
            password=str(values["password"]),
            created=float(values["created"]),
        )
    except (ValueError, KeyError, TypeError):
        delete(token)
        return None
    if time.time() - login.created > MAX_AGE_SECONDS:
        delete(token)
        return None
    return login


def delete(token: str | None) -> None:
    """End a login (and drop its flash messages)."""
    if token:
        get_store().delete(KEY + token)
        get_store().delete(FLASH_KEY + token)


def from_request(request: Request) -> StaffLogin | None:
    """The request's login (looked up once per request)."""
    if not hasattr(request.state, "staff_login"):
        request.state.staff_login = load(request.cookies.get(COOKIE))
    return request.state.staff_login


def set_cookie(response: Response, request: Request, login: StaffLogin) -> None:
    """Give the browser the login cookie: HttpOnly, SameSite=Lax, Secure over https, gone when the browser closes."""
    response.set_cookie(
        COOKIE,
        login.token,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request) -> None:
    """Remove the login cookie from the browser."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")


def flash(request: Request, text: str, kind: str = "ok") -> None:
    """Keep a message ("ok" or "error") for the next page this login shows."""
    login = from_request(request)
    if login is None:
        return
    store = get_store()
    key = FLASH_KEY + login.token
    messages = json.loads(store.get(key) or "[]")[-(MAX_FLASHES - 1) :]
    store.set(key, json.dumps([*messages, {"kind": kind, "text": text}], ensure_ascii=False), ttl=FLASH_TTL_SECONDS)


def pop_flashes(request: Request) -> list[dict[str, str]]:
    """The login's pending flash messages, removed."""
    login = from_request(request)
    if login is None:
        return []
    store = get_store()
    key = FLASH_KEY + login.token
    raw = store.get(key)
    if raw is None:
        return []
    store.delete(key)
    return json.loads(raw)
