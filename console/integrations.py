"""Admin console: the integrations allowed to call the chat API; create one (key and secret shown once), disable,
enable, rotate."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from console.csrf import csrf_protect
from console.identity import Admin, require_admin
from console.pages import audit, checked, done, failed
from console.templating import render
from core.web import DbSession
from integrations import service
from integrations.schemas import SLUG_PATTERN

PATH = "/console/admin/integrations"
router = APIRouter(prefix=PATH, tags=["console-admin"], dependencies=[Depends(require_admin), Depends(csrf_protect)])


def _page(request: Request, db_session: DbSession, credentials: service.Credentials | None = None) -> Response:
    context = {
        "integrations": service.get_all(db_session=db_session),
        "credentials": credentials,
        "slug_pattern": SLUG_PATTERN.strip("^$"),
        "max_user_id": service.USER_ID_MAX_CHARS,
    }
    return render(request, "admin_integrations.html", context)


@router.get("", response_class=Response)
def integrations_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Every integration with its key prefix, binding permission, state and last use, and the form to add one."""
    return _page(request, db_session)


@router.post("", response_class=Response)
def create_integration(
    request: Request,
    user: Admin,
    db_session: DbSession,
    slug: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    allow_binding: Annotated[str, Form()] = "",
) -> Response:
    """Create an integration and show its key and secret on this page, this once (the page is not cached)."""
    try:
        credentials = service.create(
            db_session=db_session, slug=slug.strip(), name=name, allow_binding=checked(allow_binding)
        )
    except service.IntegrationError as exc:
        return failed(request, db_session, f"无法创建接入：{exc}", PATH)
    audit(db_session, user, "integration_created", after={"slug": slug, "allow_binding": checked(allow_binding)})
    db_session.commit()
    return _page(request, db_session, credentials)


@router.post("/{slug}/rotate", response_class=Response)
def rotate_integration(request: Request, slug: str, user: Admin, db_session: DbSession) -> Response:
    """New key and secret (the old ones stop working at once), shown on this page this once."""
    try:
        credentials = service.rotate_key(db_session=db_session, slug=slug)
    except service.IntegrationError as exc:
        return failed(request, db_session, str(exc), PATH)
    audit(db_session, user, "integration_rotated", after={"slug": slug})
    db_session.commit()
    return _page(request, db_session, credentials)


def _set_enabled(request: Request, slug: str, user: Admin, db_session: DbSession, enabled: bool) -> Response:
    try:
        service.set_enabled(db_session=db_session, slug=slug, enabled=enabled)
    except service.IntegrationError as exc:
        return failed(request, db_session, str(exc), PATH)
    audit(db_session, user, "integration_enabled" if enabled else "integration_disabled", after={"slug": slug})
    return done(request, db_session, f"已{'启用' if enabled else '停用'}接入 {slug}", PATH)


@router.post("/{slug}/disable", response_class=Response)
def disable_integration(request: Request, slug: str, user: Admin, db_session: DbSession) -> Response:
    """Refuse the integration's calls from now on."""
    return _set_enabled(request, slug, user, db_session, enabled=False)


@router.post("/{slug}/enable", response_class=Response)
def enable_integration(request: Request, slug: str, user: Admin, db_session: DbSession) -> Response:
    """Accept the integration's calls again."""
    return _set_enabled(request, slug, user, db_session, enabled=True)
