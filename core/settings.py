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
    max_request_bytes: int = 4 * 1024 * 1024  # any request body; /wechat and /telegram have lower caps of their own
    inbound_messages_per_minute: int = 30  # per chat identity; more get a polite pause (0 turns it off)
    log_level: str = "INFO"
    log_format: str = "auto"  # "json" lines (with request ids), "text", or "auto": text on a terminal, else JSON
    metrics_token: str | None = None  # when set, /metrics needs "Authorization: Bearer <token>"

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

    # Ticketing
    ticket_timezone: str = "Asia/Shanghai"
    ticket_business_days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Monday = 0
    ticket_business_start: str = "09:00"
    ticket_business_end: str = "18:00"
    ticket_holidays: list[str] = Field(default_factory=list)  # closed dates, e.g. ["2026-10-01", "2026-10-02"]
    ticket_makeup_workdays: list[str] = Field(default_factory=list)  # 调休上班: weekend dates that are workdays
    # SLA targets in business seconds per priority; 2 business days of 9 h = 64800.
    ticket_sla_first_response_seconds: dict[str, int] = Field(
        default_factory=lambda: {"urgent": 15 * 60, "high": 3600, "normal": 4 * 3600, "low": 8 * 3600}
    )
    ticket_sla_resolution_seconds: dict[str, int] = Field(
        default_factory=lambda: {"urgent": 4 * 3600, "high": 8 * 3600, "normal": 2 * 9 * 3600, "low": 5 * 9 * 3600}
    )
    ticket_sla_warning_ratio: float = 0.8  # warn once this share of a target is used
    sla_alert_webhook_url: str | None = None  # warnings and breaches are POSTed here (outbox channel "webhook")
    sla_alert_webhook_timeout_seconds: float = 5.0
    ticket_reopen_days: int = 7  # a handoff or message this soon after resolve/close reopens the ticket
    ticket_idle_hours: float = 24.0  # merchant silent this long while an agent waits: back to the bot
    ticket_default_capacity: int = 5  # open tickets per agent unless set per account
    ticket_wechat_window_hours: float = 48.0  # 客服 messages allowed this long after the merchant's last message
    ticket_transcript_turns: int = 20  # conversation turns copied into a new ticket
    ticket_issue_failure_categories: list[str] = Field(default_factory=lambda: ["issuing"])  # urgent in hours

    # Incidents / analytics
    incident_topics: list[str] = Field(  # error topics watched for bursts
        default_factory=lambda: ["busy_server", "busy_maintenance", "login_network_fail", "issue_failed_generic"]
    )
    incident_threshold: int = 5  # distinct chat identities on one watched topic within the window open an incident
    incident_window_minutes: float = 10.0
    incident_poll_seconds: float = 60.0
    incident_default_notice: str = (
        "【系统公告】已知晓，正在处理：该问题影响了部分商户，技术人员正在紧急处理，恢复后即可正常使用，请稍后再试。"
    )
    unanswered_clarify_minutes: float = 10.0  # a choice offered and not taken within this long went nowhere
    unanswered_similarity: float = 60.0  # rapidfuzz ratio (0-100) at which two unanswered questions cluster
    unanswered_days: int = 30  # how far back the unanswered list looks
    analytics_days: int = 14

    # Hardening (h-small): in-process store cap, WeChat replay and encryption, validation of hostile input
    memory_store_max_keys: int = 100_000  # the in-process store evicts its least recently used keys past this
    # None: refuse plaintext WeChat pushes (403) whenever WECHAT_AES_KEY is set; false accepts them (compatible setups)
    wechat_require_encryption: bool | None = None

    # Bounded matcher work (long messages, re-ranker, unanswered page, FAQ rebuilds)
    rerank_concurrency: int = 1  # embedding re-rankings at once per process
    rerank_wait_seconds: float = 0.05  # longer without a free slot: the lexical decision answers instead
    unanswered_suggest_seconds: float = 600.0  # how long a cluster's nearest-entry suggestion is cached
    unanswered_budget_seconds: float = 3.0  # suggestions not computed within this show as none (next view has them)
    knowledge_rebuild_wait_seconds: float = 10.0  # an FAQ write waits this long for the new matcher (chat never)

    # Chat API integrations: who may call POST /api/chat
    chat_api_demo: bool = False  # calls without credentials from loopback only, as "demo:<user_id>", never binding
    chat_api_signature_max_seconds: int = 24 * 3600  # how far ahead a signed identity's `expires` may lie

    # Conversation (h-talk): acknowledgements while a person has the conversation
    human_ack_seconds: float = 180.0  # at most one "staff will see it" acknowledgement this often
    human_nudge_ack_seconds: float = 30.0  # "有人吗", "人呢", another "转人工": acknowledged at most this often

    # Unanswered questions grouped by meaning (h-unans); calibrated in tests/knowledge/test_unanswered_meaning.py
    unanswered_meaning_similarity: float = 0.35  # centred cosine (average linkage) at which questions share a group
    unanswered_embed_keys: int = 2000  # distinct questions grouped by meaning per view; the rest by wording

    # Web chat (h-web): the merchant-facing page at /chat
    web_chat_frame_ancestors: str = "*"  # CSP frame-ancestors of /chat: who may embed it ("'self'", "https://a.cn")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()


def wechat_encryption_required(settings: Settings) -> bool:
    """True when plaintext WeChat pushes are refused: as set, else whenever an AES key is configured."""
    if settings.wechat_require_encryption is not None:
        return settings.wechat_require_encryption
    return bool(settings.wechat_aes_key)
