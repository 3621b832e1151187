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
from core.redact import mask_private
from core.settings import get_settings
from knowledge.guides import get_guides
from knowledge.models import FaqEntry
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
CHANNEL_LABELS = {"wechat": "微信", "telegram": "Telegram", "api": "API", "web": "网页聊天", "terminal": "终端"}
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
    "binding_code_issued": "签发绑定码",
    "invoice_lookup": "查询发票",
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

# Ticket categories: the shipped FAQ categories and ticketing's own; an admin-named category shows as typed.
CATEGORY_LABELS = {
    "general": "一般咨询",
    "invoice": "发票问题",
    "complaint": "投诉",
    "buyer_info": "购买方信息",
    "compliance": "税务合规",
    "deduction": "抵扣勾选",
    "delivery": "发票交付",
    "filing": "申报与清卡",
    "identifiers": "发票代码与号码",
    "issuing": "开具发票",
    "login_ca_ukey": "登录与证书/UKey",
    "lost_invoice": "发票丢失",
    "missing_data": "发票查不到",
    "printing": "打印",
    "quota": "开票额度",
    "red_reversal": "红字发票",
    "registration": "开票准备与变更",
    "special_invoicing": "特殊开票",
    "system_busy": "系统繁忙",
    "tax_rates": "税率",
    "thresholds": "起征点与纳税人类型",
    "verification": "发票查验",
    "voiding": "发票作废",
}
RULE_LABELS = {
    "default": "默认",
    "complaint": "投诉",
    "issue_failure_in_hours": "开票失败（工作时间内）",
    "issue_failure_off_hours": "开票失败（工作时间外）",
}
REASON_LABELS = {
    "manual": "手动",
    "handoff": "再次转人工",
    "merchant_message": "商户发来新消息",
    "merchant_reply": "商户回复",
    "merchant_ended": "商户结束人工服务",
    "released": "退回队列",
    "reply": "客服回复后等待商户",
    "resumed": "恢复处理",
    "claim": "领取",
    "take": "接手",
    "transfer": "转交",
    "auto": "自动分配",
    "closed": "客服关闭",
    "resolved": "解决后自动关闭",
    "handed_back": "交还智能助手",
    "idle": "长时间无消息",
    "replaced": "已由新工单取代",
}
OUTCOME_LABELS = {"created": "新建工单", "reopened": "重新打开", "appended": "追加到已有工单"}
INCIDENT_STATUS_LABELS = {"open": "进行中", "closed": "已关闭"}
# How an event's fields are named in the timeline and the audit log; ids and raw payloads are not shown.
FIELD_LABELS = {
    "state": "状态",
    "priority": "优先级",
    "category": "分类",
    "rule": "规则",
    "reason": "原因",
    "how": "方式",
    "outcome": "结果",
    "assignee_id": "处理人",
    "reopened_count": "重开次数",
    "score": "评分",
    "comment": "留言",
    "tags": "标签",
    "topic": "问题",
    "status": "状态",
    "notice": "公告",
    "merchants": "商户数",
    "affected": "受影响商户",
    "role": "角色",
    "username": "用户名",
    "capacity": "接单上限",
    "display_name": "显示名称",
    "active": "启用",
    "enabled": "启用",
    "version": "版本",
    "question": "问题",
    "text": "内容",
    "merchant": "商户",
    "expires_at": "有效期至",
    "number": "发票号码",
    "found": "查到",
}
HIDDEN_FIELDS = frozenset({"event", "ip", "window_started_at", "opened_at"})
VALUE_LABELS: dict[str, dict] = {
    "state": STATE_LABELS,
    "priority": PRIORITY_LABELS,
    "category": CATEGORY_LABELS,
    "rule": RULE_LABELS,
    "reason": REASON_LABELS,
    "how": REASON_LABELS,
    "outcome": OUTCOME_LABELS,
    "role": ROLE_LABELS,
    "status": INCIDENT_STATUS_LABELS,
}


def category_label(category: str | None) -> str:
    """A ticket category as staff read it ("general" is 一般咨询); one an admin named shows as typed."""
    return CATEGORY_LABELS.get(category or "", category or "—")


def topic_label(topic: str | None) -> str:
    """An FAQ or guide topic as staff read it: its guide's title ("busy_server" is 提示“服务器繁忙…”) or its FAQ
    question; as stored when neither is known."""
    if not topic:
        return "—"
    guide = get_guides().get(topic)
    if guide is not None:
        return guide.title
    with session_scope() as db_session:
        entry = db_session.get(FaqEntry, topic)
        return entry.question if entry is not None else topic


def change_items(values: dict[str, Any] | None, names: dict[int, str] | None = None) -> list[tuple[str, str]]:
    """An event's before/after fields as (Chinese name, readable value) pairs, without internal ids."""
    items = []
    for key, value in (values or {}).items():
        if key in HIDDEN_FIELDS or (key.endswith("_id") and key != "assignee_id") or key == "id":
            continue
        if key == "assignee_id":
            shown = (names or {}).get(value, "—") if value is not None else "未分配"
        elif key == "topic":
            shown = topic_label(value)
        elif isinstance(value, bool):
            shown = "是" if value else "否"
        elif isinstance(value, list):
            shown = "、".join(str(v) for v in value) or "—"
        elif value is None:
            shown = "—"
        else:
            shown = VALUE_LABELS.get(key, {}).get(value, str(value))
        items.append((FIELD_LABELS.get(key, key), shown))
    return items


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
    env.filters.update(
        localtime=localtime,
        duration=duration,
        category=category_label,
        topic=topic_label,
        change_items=change_items,
        private=mask_private,
    )
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
        REASON_LABELS=REASON_LABELS,
        CATEGORY_LABELS=CATEGORY_LABELS,
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


LIVE_REFRESH_HEADER = "x-live-refresh"  # sent by console/static/live.js when it re-fetches a page in the background


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """A page: the template with `staff` (current user or None), `csrf_token`, `nav` flags and pending `flashes`
    added (values in `context` win). A live page's background refresh leaves the flashes to the page being shown."""
    staff = _staff(request)
    shown = staff is not None and LIVE_REFRESH_HEADER not in request.headers
    values: dict[str, Any] = {
        "staff": staff,
        "csrf_token": csrf.page_token(request) if staff is not None else None,
        "nav": nav_flags(request, staff),
        "flashes": logins.pop_flashes(request) if shown else [],
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
