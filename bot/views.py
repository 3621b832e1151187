"""Operations routes: liveness, readiness and Prometheus metrics."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import text

from core import metrics
from core.database import session_scope
from core.outbox.backlog import OutboxBacklog
from core.settings import get_settings
from core.store import get_store

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz() -> Response:
    """The database and the store answer: 200, else 503 naming what is down."""
    problems = {}
    try:
        with session_scope() as db_session:
            db_session.execute(text("SELECT 1"))
    except Exception as exc:
        metrics.INFRA_ERRORS.labels("database").inc()
        problems["database"] = type(exc).__name__
    try:
        if not get_store().ping():
            problems["store"] = "no answer"
    except Exception as exc:
        metrics.INFRA_ERRORS.labels("store").inc()
        problems["store"] = type(exc).__name__
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus metrics (bearer METRICS_TOKEN when it is set)."""
    token = get_settings().metrics_token
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token")
    body, content_type = metrics.render(collectors=(OutboxBacklog(),))
    return Response(body, media_type=content_type)
