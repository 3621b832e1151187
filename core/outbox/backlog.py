"""The outbox backlog as a Prometheus gauge, read from the database at scrape time."""

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from core import metrics
from core.database import session_scope
from core.outbox.models import PULL_CHANNELS, OutboxMessage


class OutboxBacklog:
    """Collects the outbox backlog (pending and sending rows per channel) from the database at scrape time; messages
    waiting for a merchant's client to fetch them (PULL_CHANNELS) are not a delivery backlog and are left out."""

    def collect(self):
        gauge = GaugeMetricFamily(
            "merchant_assist_outbox_backlog", "Outbox messages not yet sent", labels=["channel", "status"]
        )
        try:
            with session_scope() as db_session:
                query = (
                    select(OutboxMessage.channel, OutboxMessage.status, func.count())
                    .where(
                        OutboxMessage.status.in_(("pending", "sending")),
                        OutboxMessage.channel.not_in(sorted(PULL_CHANNELS)),
                    )
                    .group_by(OutboxMessage.channel, OutboxMessage.status)
                )
                for channel, status, count in db_session.execute(query):
                    gauge.add_metric([channel, status], count)
        except Exception:
            metrics.INFRA_ERRORS.labels("database").inc()
        yield gauge
