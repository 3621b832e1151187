"""Settings read from the environment and an optional `.env` file."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")


class Settings(BaseSettings):
    """Application settings; every secret comes from the environment."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default=f"sqlite:///{VAR_DIR / 'merchant-assist.db'}")
    redis_url: str | None = None
    session_ttl_seconds: int = 30 * 60
    admin_token: str | None = None
    matcher_embeddings: bool = True
    max_message_chars: int = 2000
    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
