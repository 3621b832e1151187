"""Prometheus metrics: what the bot answered, how fast it matched, the outbox, SLAs and infrastructure errors.

With several worker processes set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them) so /metrics
aggregates every process; otherwise each process reports its own.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import REGISTRY, GaugeMetricFamily

MESSAGES = Counter("merchant_assist_messages_total", "Messages answered, by channel and intent", ["channel", "intent"])
MATCH_SECONDS = Histogram(
    "merchant_assist_match_seconds",
    "Time to match a message against the FAQ",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
OUTBOX_SENDS = Counter(
    "merchant_assist_outbox_sends_total", "Outbox delivery attempts, by channel and outcome", ["channel", "outcome"]
)
SLA_ALERTS = Counter("merchant_assist_sla_alerts_total", "SLA warnings and breaches raised", ["kind"])
INFRA_ERRORS = Counter("merchant_assist_infra_errors_total", "Store and database errors, by component", ["component"])
THROTTLED = Counter("merchant_assist_throttled_total", "Messages over the per-identity rate limit")
DEGRADED = Counter("merchant_assist_degraded_total", "Messages answered without a working store (session not kept)")


class OutboxBacklog:
    """Collects the outbox backlog (pending and sending rows per channel) from the database at scrape time."""

    def collect(self):
        from sqlalchemy import func, select

        from bot.database import session_scope
        from bot.outbox.models import OutboxMessage

        gauge = GaugeMetricFamily(
            "merchant_assist_outbox_backlog", "Outbox messages not yet sent", labels=["channel", "status"]
        )
        try:
            with session_scope() as db_session:
                query = (
                    select(OutboxMessage.channel, OutboxMessage.status, func.count())
                    .where(OutboxMessage.status.in_(("pending", "sending")))
                    .group_by(OutboxMessage.channel, OutboxMessage.status)
                )
                for channel, status, count in db_session.execute(query):
                    gauge.add_metric([channel, status], count)
        except Exception:
            INFRA_ERRORS.labels("database").inc()
        yield gauge


_backlog_registered = False


def register_backlog() -> None:
    """Add the backlog collector to the default registry once per process."""
    global _backlog_registered
    if not _backlog_registered:
        REGISTRY.register(OutboxBacklog())
        _backlog_registered = True


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(OutboxBacklog())
        return generate_latest(registry), CONTENT_TYPE_LATEST
    register_backlog()
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
