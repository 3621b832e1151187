"""Analytics (per-day charts and tables) and incidents (list, detail, publish and push the notice, close)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console import charts
from console.errors import not_found
from console.identity import Admin
from console.pages import BASE, audit, done, failed, int_param, page
from core.settings import get_settings
from core.web import DbSession, RowId
from knowledge import service
from ticketing import analytics, incidents
from ticketing.incident_models import STATUS_LABELS

router = APIRouter()
INCIDENTS_PATH = f"{BASE}/incidents"
GOOD, BAD, INFO, WARN = "#15803d", "#b91c1c", "#1d4ed8", "#b45309"


def _topic_questions(db_session) -> dict[str, str]:
    return {e.id: e.question for e in service.get_all(db_session=db_session)}


# --- analytics -----------------------------------------------------------------------------------------------


@router.get("/analytics", response_class=Response)
def analytics_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Per-day conversations, bot-resolved, fallback, out-of-scope and handoff rates, response and resolution
    times, SLA breaches and CSAT for the last `days` (ANALYTICS_DAYS), with top topics and top unanswered questions."""
    days = int_param(request.query_params.get("days"), get_settings().analytics_days, 1, 90)
    result = analytics.report(db_session=db_session, days=days)
    labels = [d.day.strftime("%m-%d") for d in result.days]
    series = result.days
    first_response = [d.median_first_response_seconds for d in series]
    resolution = [d.median_resolution_seconds for d in series]
    context = {
        "result": result,
        "days": days,
        "timezone": get_settings().ticket_timezone,
        "questions": _topic_questions(db_session),
        "charts": {
            "conversations": charts.bar_chart(labels, [d.conversations for d in series], title="每日会话数"),
            "rates": charts.line_chart(
                labels,
                [
                    ("机器人解决率", [d.bot_resolved_rate for d in series], GOOD),
                    ("兜底率", [d.fallback_rate for d in series], WARN),
                    ("超出范围率", [d.out_of_scope_rate for d in series], INFO),
                    ("转人工率", [d.handoff_rate for d in series], BAD),
                ],
                title="机器人解决率、兜底率、超出范围率与转人工率",
                fmt=charts.percent,
                maximum=1.0,
            ),
            "times": charts.line_chart(
                labels,
                [
                    ("首次响应（中位数）", first_response, INFO),
                    ("解决时长（中位数）", resolution, WARN),
                ],
                title="首次响应与解决时长",
                fmt=charts.time_format([*first_response, *resolution]),
            ),
            "sla": charts.bar_chart(labels, [d.sla_breaches for d in series], title="SLA 超时次数", color=BAD),
            "csat": charts.line_chart(
                labels,
                [("满意度平均分", [d.csat_average for d in series], GOOD)],
                title="满意度（1-5 分）",
                maximum=5.0,
                ticks=5,
            ),
        },
    }
    return page(request, db_session, "admin_analytics.html", context)


# --- incidents -----------------------------------------------------------------------------------------------


def incident_path(incident_id: int) -> str:
    """One incident's page."""
    return f"{INCIDENTS_PATH}/{incident_id}"


@router.get("/incidents", response_class=Response)
def incidents_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Every incident, open ones first, and what is watched."""
    settings = get_settings()
    context = {
        "incidents": incidents.get_all(db_session=db_session),
        "questions": _topic_questions(db_session),
        "status_labels": STATUS_LABELS,
        "watched": settings.incident_topics,
        "threshold": settings.incident_threshold,
        "window": settings.incident_window_minutes,
    }
    return page(request, db_session, "admin_incidents.html", context)


@router.post("/incidents/detect", response_class=Response)
def detect_now(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Run detection now rather than waiting for the worker."""
    opened = incidents.detect(db_session=db_session)
    text = f"已检测：新建 {len(opened)} 个事件" if opened else "已检测：没有新的事件"
    return done(request, db_session, text, INCIDENTS_PATH)


@router.get("/incidents/{incident_id}", response_class=Response)
def incident_page(request: Request, incident_id: RowId, user: Admin, db_session: DbSession) -> Response:
    """One incident: affected merchants, linked tickets, the notice and the actions."""
    incident = incidents.get(db_session=db_session, incident_id=incident_id)
    if incident is None:
        raise not_found(f"事件 {incident_id} 不存在")
    affected = incidents.affected(db_session=db_session, incident_id=incident_id)
    context = {
        "incident": incident,
        "question": _topic_questions(db_session).get(incident.topic, ""),
        "affected": affected[:500],
        "pending": incidents.owed_count(db_session=db_session, incident_id=incident_id),
        "tickets": incidents.linked_tickets(db_session=db_session, incident_id=incident_id),
        "status_labels": STATUS_LABELS,
        "default_notice": get_settings().incident_default_notice,
    }
    return page(request, db_session, "admin_incident.html", context)


@router.post("/incidents/{incident_id}/notice", response_class=Response)
def publish_notice(
    request: Request,
    incident_id: RowId,
    user: Admin,
    db_session: DbSession,
    notice: Annotated[str, Form()] = "",
    push: Annotated[str | None, Form()] = None,
) -> Response:
    """Publish or reword the notice; with `push`, also send it now to merchants who hit the topic before."""
    back = incident_path(incident_id)
    try:
        incidents.publish_notice(db_session=db_session, incident_id=incident_id, text=notice, actor_id=user.id)
    except incidents.IncidentError as exc:
        return failed(request, db_session, str(exc), back)
    text = "公告已发布：智能助手回答该问题时会先发送此公告"
    if push is not None:
        pushed = incidents.push_notice(db_session=db_session, incident_id=incident_id)
        audit(db_session, user, "incident_pushed", after={"incident_id": incident_id, "merchants": pushed})
        text += f"；已向 {pushed} 位商户推送"
    return done(request, db_session, text, back)


@router.post("/incidents/{incident_id}/push", response_class=Response)
def push_notice(request: Request, incident_id: RowId, user: Admin, db_session: DbSession) -> Response:
    """Send the published notice to merchants who hit the topic before it was published (once each)."""
    pushed = incidents.push_notice(db_session=db_session, incident_id=incident_id)
    audit(db_session, user, "incident_pushed", after={"incident_id": incident_id, "merchants": pushed})
    return done(request, db_session, f"已向 {pushed} 位商户推送公告", incident_path(incident_id))


@router.post("/incidents/{incident_id}/close", response_class=Response)
def close_incident(request: Request, incident_id: RowId, user: Admin, db_session: DbSession) -> Response:
    """Close the incident: the notice stops at once."""
    try:
        incidents.close(db_session=db_session, incident_id=incident_id, actor_id=user.id)
    except incidents.IncidentError as exc:
        return failed(request, db_session, str(exc), incident_path(incident_id))
    return done(request, db_session, "事件已关闭，公告不再发送", incident_path(incident_id))
