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
    knowledge_refresh_seconds: float = 1.0
    max_message_chars: int = 2000
    log_level: str = "INFO"

    # WeChat Official Account (公众号)
    wechat_token: str | None = None
    wechat_app_id: str | None = None
    wechat_app_secret: str | None = None
    wechat_aes_key: str | None = None
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_reply_budget_seconds: float = 4.0
    wechat_max_body_bytes: int = 64 * 1024
    wechat_timestamp_window_seconds: int = 300

    # Telegram
    telegram_bot_token: str | None = None
    telegram_secret_token: str | None = None
    telegram_api_base: str = "https://api.telegram.org"

    # Invoices: "sql" reads our own table (fed by POST /api/invoices or CSV import); "http" calls INVOICE_API_URL
    invoice_backend: str = "sql"
    invoice_api_url: str | None = None
    invoice_api_token: str | None = None
    invoice_api_timeout_seconds: float = 1.5  # × (retries + 1) stays inside WeChat's reply budget
    invoice_api_retries: int = 1
    invoice_cache_seconds: float = 60.0
    invoice_breaker_failures: int = 5
    invoice_breaker_reset_seconds: float = 30.0
    invoice_feed_token: str | None = None  # bearer token for POST /api/invoices (ADMIN_TOKEN also works)

    # Merchant binding
    binding_code_ttl_seconds: int = 24 * 3600
    binding_max_failures: int = 5  # wrong tries per chat identity (and per taxpayer id) per window
    binding_failure_window_seconds: int = 3600

    # Invoice watch
    watch_first_check_seconds: float = 60.0
    watch_max_interval_seconds: float = 3600.0
    watch_max_hours: float = 72.0

    # Outbox delivery
    outbox_poll_seconds: float = 1.0
    outbox_max_attempts: int = 8
    run_worker_in_serve: bool = True


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
