"""The console's Jinja2 templates and `render`, which adds what every page needs."""

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from sqlalchemy import inspect
from starlette.responses import RedirectResponse, Response

from console import csrf, logins
from console.errors import LOGIN_PATH, TITLES, ConsoleError
from console.identity import current_staff
from core.clock import utc
from core.database import session_scope
from core.settings import get_settings
from ticketing.models import PRIORITY_LABELS, ROLE_ADMIN, STATE_LABELS, StaffUser
from ticketing.sla import CLOCK_LABELS

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"

# Console pages carry CSRF tokens and merchant data: never framed by other sites, never cached.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
ROLE_LABELS = {"agent": "客服", "admin": "管理员"}
CHANNEL_LABELS = {"wechat": "微信", "telegram": "Telegram", "api": "API"}
SLA_LABELS = {
    "ok": "正常",
    "warning": "即将超时",
    "breached": "已超时",
    "paused": "已暂停",
    "met": "已达成",
    "stopped": "已停止",
}
AUTHOR_LABELS = {"merchant": "商户", "bot": "智能助手", "agent": "客服", "system": "系统通知"}
DELIVERY_LABELS = {"pending": "待发送", "sending": "发送中", "sent": "已送达", "failed": "发送失败"}
ACTION_LABELS = {
    "created": "创建工单",
    "handoff": "转人工",
    "assigned": "分配",
    "state": "状态变更",
    "reopened": "重新打开",
    "escalated": "升级优先级",
    "priority": "修改优先级",
    "category": "修改分类",
    "tags": "修改标签",
    "note": "添加备注",
    "reply": "客服回复",
    "notice_skipped": "通知未发送（窗口关闭）",
    "csat": "商户评分",
    "sla_warning": "SLA 预警",
    "sla_breach": "SLA 超时",
    "canned_created": "新建快捷回复",
    "canned_updated": "修改快捷回复",
    "canned_deleted": "删除快捷回复",
    "staff_created": "新建账号",
    "staff_password": "重置密码",
    "staff_role": "修改角色",
    "staff_capacity": "修改接单上限",
    "staff_display_name": "修改显示名称",
    "staff_active": "启用/停用账号",
    "staff_online": "上线",
    "staff_offline": "下线",
    "staff_login": "登录控制台",
    "staff_logout": "退出登录",
    "faq_created": "新建 FAQ",
    "faq_updated": "修改 FAQ",
    "faq_enabled": "启用 FAQ",
    "faq_disabled": "停用 FAQ",
    "faq_deleted": "删除 FAQ",
    "faq_rollback": "回滚 FAQ 版本",
    "faq_imported": "导入 FAQ",
    "faq_category_renamed": "重命名 FAQ 分类",
    "unanswered_alternate": "未解决问题加入相似问法",
    "unanswered_dismissed": "忽略未解决问题",
    "incident_opened": "发现事件",
    "incident_notice": "发布事件公告",
    "incident_pushed": "推送事件公告",
    "incident_closed": "关闭事件",
    "incident_linked": "关联工单到事件",
    "binding_locked": "税号绑定锁定（错误尝试过多）",
}


def localtime(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A moment in the business time zone (TICKET_TIMEZONE), "—" for None."""
    if moment is None:
        return "—"
    return utc(moment).astimezone(ZoneInfo(get_settings().ticket_timezone)).strftime(fmt)


def duration(seconds: float | None) -> str:
    """Seconds as "2 小时 5 分" / "3 分" / "不到 1 分" (sign ignored), "—" for None."""
    if seconds is None:
        return "—"
    minutes = int(abs(seconds) // 60)
    if minutes < 1:
        return "不到 1 分"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} 天" if days else "", f"{hours} 小时" if hours else "", f"{minutes} 分" if minutes else ""]
    return " ".join(part for part in parts if part)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(localtime=localtime, duration=duration)
    env.globals.update(
        STATE_LABELS=STATE_LABELS,
        PRIORITY_LABELS=PRIORITY_LABELS,
        ROLE_LABELS=ROLE_LABELS,
        CHANNEL_LABELS=CHANNEL_LABELS,
        SLA_LABELS=SLA_LABELS,
        CLOCK_LABELS=CLOCK_LABELS,
        AUTHOR_LABELS=AUTHOR_LABELS,
        DELIVERY_LABELS=DELIVERY_LABELS,
        ACTION_LABELS=ACTION_LABELS,
    )
    return env


templates = Jinja2Templates(env=_environment())


def _staff(request: Request) -> StaffUser | None:
    """The logged-in account, as the auth dependencies found it (looked up here when no dependency ran)."""
    if not hasattr(request.state, "console_staff"):
        return current_staff(request)
    user = request.state.console_staff
    if user is not None and inspect(user).expired_attributes:
        # The request's transaction was rolled back (an error page): read the account again.
        with session_scope() as db_session:
            user = db_session.get(StaffUser, inspect(user).identity[0])
    return user


def nav_flags(request: Request, staff: StaffUser | None) -> dict[str, Any]:
    """What the navigation shows: whether someone is logged in, whether they are an admin, and the current path."""
    return {
        "logged_in": staff is not None,
        "admin": staff is not None and staff.role == ROLE_ADMIN,
        "path": request.url.path,
    }


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """A page: the template with `staff` (current user or None), `csrf_token`, `nav` flags and pending `flashes`
    added (values in `context` win)."""
    staff = _staff(request)
    values: dict[str, Any] = {
        "staff": staff,
        "csrf_token": csrf.page_token(request) if staff is not None else None,
        "nav": nav_flags(request, staff),
        "flashes": logins.pop_flashes(request) if staff is not None else [],
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    response.headers.update(PAGE_HEADERS)
    return response


def error_page(request: Request, exc: Exception) -> Response:
    """Render a ConsoleError: redirects as they are, everything else as the console's error page."""
    assert isinstance(exc, ConsoleError)
    headers = dict(exc.headers or {})
    if 300 <= exc.status_code < 400:
        return RedirectResponse(headers.pop("Location", LOGIN_PATH), exc.status_code, headers=headers)
    context = {"code": exc.status_code, "title": TITLES.get(exc.status_code, "出错了"), "message": exc.detail}
    response = render(request, "error.html", context, status_code=exc.status_code)
    response.headers.update(headers)
    return response
