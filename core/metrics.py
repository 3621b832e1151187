"""Prometheus metrics: what the bot answered, how fast it matched, the outbox, SLAs and infrastructure errors.

With several worker processes set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them) so /metrics
aggregates every process; otherwise each process reports its own.
"""

import os
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import REGISTRY
from prometheus_client.registry import Collector

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
STORE_EVICTIONS = Counter(
    "merchant_assist_store_evictions_total", "Keys evicted from the full in-process store (MEMORY_STORE_MAX_KEYS)"
)
RERANK_SKIPPED = Counter(
    "merchant_assist_rerank_skipped_total", "Messages decided lexically because the embedding re-ranker was busy"
)
DEGRADED = Counter("merchant_assist_degraded_total", "Messages answered without a working store (chat state not kept)")


_registered: set[type] = set()


def render(*, collectors: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text and its content type; `collectors` are read at scrape time along with the counters."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in collectors:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    for collector in collectors:
        if type(collector) not in _registered:  # once per process
            REGISTRY.register(collector)
            _registered.add(type(collector))
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
