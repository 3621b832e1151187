"""Console refusals (login needed, wrong role, bad CSRF token, not found) with their reasons in Chinese."""

from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request, status

LOGIN_PATH = "/console/login"
HOME_PATH = "/console/queue"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class ConsoleError(HTTPException):
    """A refusal the console shows as a page (or, without the handler installed, FastAPI's JSON with the same status
    and headers)."""


def safe_next(target: str | None, default: str = HOME_PATH) -> str:
    """`target` when it is a relative path inside the console (no scheme, host or backslash tricks), else `default`."""
    if not target or len(target) > 2000 or "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if parts.path != "/console" and not parts.path.startswith("/console/"):
        return default
    if parts.path == LOGIN_PATH:
        return default
    return target


def login_url(next_path: str | None = None) -> str:
    """The login page, coming back to `next_path` afterwards when it is safe."""
    target = safe_next(next_path, default="")
    return f"{LOGIN_PATH}?next={quote(target, safe='/')}" if target else LOGIN_PATH


def login_required(request: Request) -> ConsoleError:
    """Anonymous: a page view (GET/HEAD) is sent to the login page, anything else gets 401."""
    if request.method in ("GET", "HEAD"):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return ConsoleError(status.HTTP_303_SEE_OTHER, "请先登录", headers={"Location": login_url(here)})
    return ConsoleError(status.HTTP_401_UNAUTHORIZED, "请先登录")


def forbidden(message: str = "您没有权限访问此页面") -> ConsoleError:
    """403 with a reason in Chinese."""
    return ConsoleError(status.HTTP_403_FORBIDDEN, message)


def not_found(message: str = "页面不存在") -> ConsoleError:
    """404 with a reason in Chinese."""
    return ConsoleError(status.HTTP_404_NOT_FOUND, message)


TITLES = {
    status.HTTP_400_BAD_REQUEST: "请求有误",
    status.HTTP_401_UNAUTHORIZED: "需要登录",
    status.HTTP_403_FORBIDDEN: "无权操作",
    status.HTTP_404_NOT_FOUND: "未找到",
    status.HTTP_409_CONFLICT: "操作未完成",
    status.HTTP_429_TOO_MANY_REQUESTS: "尝试次数过多",
}
