"""Admin API for integrations: create (key and secret shown once), list, disable, enable, rotate."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from core.web import DbSession, require_admin
from integrations import service
from integrations.models import Integration
from integrations.schemas import SLUG_PATTERN, IntegrationCredentialsOut, IntegrationIn, IntegrationOut

router = APIRouter(prefix="/api/admin/integrations", tags=["admin"], dependencies=[Depends(require_admin)])
Slug = Annotated[str, Path(pattern=SLUG_PATTERN)]


def to_out(integration: Integration) -> IntegrationOut:
    """The public view of an integration."""
    return IntegrationOut.model_validate(integration, from_attributes=True)


def _credentials_out(credentials: service.Credentials) -> IntegrationCredentialsOut:
    return IntegrationCredentialsOut(
        **to_out(credentials.integration).model_dump(),
        api_key=credentials.api_key,
        signing_secret=credentials.signing_secret,
    )


@router.post("", response_model=IntegrationCredentialsOut, status_code=status.HTTP_201_CREATED)
def create_integration(body: IntegrationIn, db_session: DbSession) -> IntegrationCredentialsOut:
    """Create an integration; the response holds its API key and signing secret, shown this once."""
    try:
        credentials = service.create(
            db_session=db_session, slug=body.slug, name=body.name, allow_binding=body.allow_binding
        )
    except service.IntegrationError as exc:
        taken = isinstance(exc, service.IntegrationExists)
        code = status.HTTP_409_CONFLICT if taken else status.HTTP_422_UNPROCESSABLE_CONTENT
        raise HTTPException(code, str(exc)) from exc
    return _credentials_out(credentials)


@router.get("", response_model=list[IntegrationOut])
def list_integrations(db_session: DbSession) -> list[IntegrationOut]:
    """Every integration (without keys or secrets)."""
    return [to_out(i) for i in service.get_all(db_session=db_session)]


def _change(db_session: DbSession, slug: str, enabled: bool) -> IntegrationOut:
    try:
        return to_out(service.set_enabled(db_session=db_session, slug=slug, enabled=enabled))
    except service.IntegrationError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post("/{slug}/disable", response_model=IntegrationOut)
def disable_integration(slug: Slug, db_session: DbSession) -> IntegrationOut:
    """Refuse the integration's calls from now on."""
    return _change(db_session, slug, enabled=False)


@router.post("/{slug}/enable", response_model=IntegrationOut)
def enable_integration(slug: Slug, db_session: DbSession) -> IntegrationOut:
    """Accept the integration's calls again."""
    return _change(db_session, slug, enabled=True)


@router.post("/{slug}/rotate", response_model=IntegrationCredentialsOut)
def rotate_integration_key(slug: Slug, db_session: DbSession) -> IntegrationCredentialsOut:
    """Replace the API key and signing secret (the old ones stop working at once); the new ones are shown once."""
    try:
        return _credentials_out(service.rotate_key(db_session=db_session, slug=slug))
    except service.IntegrationError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
