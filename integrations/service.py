"""Integrations: create them (key and secret shown once), authenticate API keys and signed identities, disable,
rotate."""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utc
from integrations.models import Integration

KEY_PREFIX = "mak_"
SECRET_PREFIX = "mas_"
SLUG = re.compile(r"[a-z0-9-]{2,32}")
SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
# Namespaces that are not integrations: API identities stored before integrations existed, and the local demo mode.
LEGACY_NAMESPACE = "legacy"
DEMO_NAMESPACE = "demo"
RESERVED_SLUGS = frozenset({LEGACY_NAMESPACE, DEMO_NAMESPACE})
IDENTITY_COLUMN_CHARS = 128  # user_id columns of conversations, bindings, watches, tickets
USER_ID_MAX_CHARS = IDENTITY_COLUMN_CHARS - 32 - 1  # "<slug>:<user_id>" always fits
DISPLAY_PREFIX_CHARS = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most this often per integration


class IntegrationError(ValueError):
    """An integration cannot be created or changed as asked; the message says why."""


class IntegrationExists(IntegrationError):
    """The slug already names an integration."""


class AuthenticationFailed(Exception):
    """The credentials are missing, unknown or wrong; the message says which (without revealing secrets)."""


class IntegrationDisabled(Exception):
    """The credentials are right but the integration is disabled."""


@dataclass(frozen=True)
class Credentials:
    """A new API key and signing secret: shown to the admin once, never stored in clear (the key) or shown again."""

    integration: Integration
    api_key: str
    signing_secret: str


def hash_key(api_key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def sign(*, signing_secret: str, user_id: str, expires: int) -> str:
    """The signature of a user id until `expires` (unix seconds): hex HMAC-SHA256 of "<user_id>.<expires>"."""
    message = f"{user_id}.{expires}".encode()
    return hmac.new(signing_secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def namespaced(namespace: str, user_id: str) -> str:
    """The identity the router sees for `user_id` of an integration (or of the demo namespace)."""
    return f"{namespace}:{user_id}"


def check_slug(slug: str) -> str:
    """The slug when it may name a new integration; IntegrationError otherwise."""
    if not SLUG.fullmatch(slug or ""):
        raise IntegrationError("slug must be 2-32 characters of a-z, 0-9 and '-'")
    if slug in RESERVED_SLUGS:
        raise IntegrationError(f"slug {slug!r} is reserved")
    return slug


def _new_secrets() -> tuple[str, str]:
    return KEY_PREFIX + secrets.token_urlsafe(32), SECRET_PREFIX + secrets.token_urlsafe(32)


def create(*, db_session: Session, slug: str, name: str, allow_binding: bool = True) -> Credentials:
    """Create an integration; its API key and signing secret are returned this once."""
    check_slug(slug)
    if not name.strip():
        raise IntegrationError("name must not be empty")
    if get_by_slug(db_session=db_session, slug=slug) is not None:
        raise IntegrationExists(f"integration {slug!r} already exists")
    api_key, signing_secret = _new_secrets()
    integration = Integration(
        slug=slug,
        name=name.strip()[:200],
        key_hash=hash_key(api_key),
        key_prefix=api_key[:DISPLAY_PREFIX_CHARS],
        signing_secret=signing_secret,
        allow_binding=allow_binding,
        enabled=True,
    )
    db_session.add(integration)
    db_session.flush()
    return Credentials(integration, api_key, signing_secret)


def get_all(*, db_session: Session) -> list[Integration]:
    """Every integration, oldest first."""
    return list(db_session.scalars(select(Integration).order_by(Integration.id)))


def get_by_slug(*, db_session: Session, slug: str) -> Integration | None:
    """One integration by slug."""
    return db_session.scalar(select(Integration).where(Integration.slug == slug))


def _require(db_session: Session, slug: str) -> Integration:
    integration = get_by_slug(db_session=db_session, slug=slug)
    if integration is None:
        raise IntegrationError(f"no integration {slug!r}")
    return integration


def set_enabled(*, db_session: Session, slug: str, enabled: bool) -> Integration:
    """Disable (calls are refused at once) or enable an integration."""
    integration = _require(db_session, slug)
    integration.enabled = enabled
    db_session.flush()
    return integration


def disable(*, db_session: Session, slug: str) -> Integration:
    """Refuse every call of the integration from now on."""
    return set_enabled(db_session=db_session, slug=slug, enabled=False)


def enable(*, db_session: Session, slug: str) -> Integration:
    """Accept the integration's calls again."""
    return set_enabled(db_session=db_session, slug=slug, enabled=True)


def rotate_key(*, db_session: Session, slug: str) -> Credentials:
    """Replace the API key and the signing secret (the old ones stop working at once); the new ones are returned
    this once."""
    integration = _require(db_session, slug)
    api_key, signing_secret = _new_secrets()
    integration.key_hash = hash_key(api_key)
    integration.key_prefix = api_key[:DISPLAY_PREFIX_CHARS]
    integration.signing_secret = signing_secret
    db_session.flush()
    return Credentials(integration, api_key, signing_secret)


def _admit(integration: Integration, now: datetime) -> Integration:
    if not integration.enabled:
        raise IntegrationDisabled(f"integration {integration.slug!r} is disabled")
    last = integration.last_used_at
    if last is None or now - utc(last) >= LAST_USED_RESOLUTION:
        integration.last_used_at = now
    return integration


def authenticate_key(*, db_session: Session, api_key: str, now: datetime | None = None) -> Integration:
    """The integration holding `api_key`; AuthenticationFailed when none does, IntegrationDisabled when disabled."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        raise AuthenticationFailed("invalid API key")
    wanted = hash_key(api_key)
    integration = db_session.scalar(select(Integration).where(Integration.key_hash == wanted))
    if integration is None or not hmac.compare_digest(integration.key_hash, wanted):
        raise AuthenticationFailed("invalid API key")
    return _admit(integration, utc(now))


def authenticate_signature(
    *,
    db_session: Session,
    slug: str,
    user_id: str,
    expires: int,
    signature: str,
    max_ahead_seconds: int,
    now: datetime | None = None,
) -> Integration:
    """The integration whose signing secret signed `user_id` until `expires`; AuthenticationFailed when the signature
    is wrong, expired or too far ahead, IntegrationDisabled when the integration is disabled."""
    if not SIGNATURE.fullmatch(signature):
        raise AuthenticationFailed("invalid signature")
    moment = utc(now)
    now_seconds = int(moment.timestamp())
    if expires <= now_seconds:
        raise AuthenticationFailed("signature expired")
    if expires > now_seconds + max_ahead_seconds:
        raise AuthenticationFailed(f"expires is more than {max_ahead_seconds} seconds ahead")
    integration = get_by_slug(db_session=db_session, slug=slug) if SLUG.fullmatch(slug) else None
    # An unknown integration is refused like a wrong signature (a throwaway secret keeps the timing alike).
    secret = integration.signing_secret if integration is not None else secrets.token_hex(16)
    expected = sign(signing_secret=secret, user_id=user_id, expires=expires)
    if not hmac.compare_digest(expected, signature.lower()) or integration is None:
        raise AuthenticationFailed("invalid signature")
    return _admit(integration, moment)
