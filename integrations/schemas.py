"""Integration admin API bodies."""

from pydantic import BaseModel, Field

from core.clock import UtcDateTime

SLUG_PATTERN = r"^[a-z0-9-]{2,32}$"


class IntegrationIn(BaseModel):
    """An integration to create."""

    slug: str = Field(pattern=SLUG_PATTERN, description="short name; its users are namespaced as <slug>:<user_id>")
    name: str = Field(min_length=1, max_length=200)
    allow_binding: bool = Field(default=True, description="whether its users may bind a merchant (and see invoices)")


class IntegrationOut(BaseModel):
    """An integration; its key appears only as a short prefix."""

    id: int
    slug: str
    name: str
    key_prefix: str
    allow_binding: bool
    enabled: bool
    created_at: UtcDateTime | None
    last_used_at: UtcDateTime | None


class IntegrationCredentialsOut(IntegrationOut):
    """A new API key and signing secret: shown only in this response, store them now."""

    api_key: str
    signing_secret: str
