"""Deliver SLA alerts queued on the outbox channel "webhook" by POSTing their JSON to SLA_ALERT_WEBHOOK_URL."""

import json
from typing import Any

import httpx

from core.outbox.senders import RetryLater, Undeliverable
from core.settings import get_settings
from ticketing.sla import WEBHOOK_CHANNEL

RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class WebhookSender:
    """An outbox Sender: the payload text (an alert's JSON) is POSTed as the request body to one configured URL."""

    channel = WEBHOOK_CHANNEL

    def __init__(self, url: str | None = None, *, timeout: float | None = None, client: httpx.Client | None = None):
        settings = get_settings()
        self.url = url or settings.sla_alert_webhook_url
        if not self.url:
            raise ValueError("SLA_ALERT_WEBHOOK_URL is not set")
        seconds = settings.sla_alert_webhook_timeout_seconds if timeout is None else timeout
        self.client = client or httpx.Client(timeout=httpx.Timeout(seconds))

    def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """POST one alert; 5xx, 429 and network errors are retried later, other 4xx given up."""
        text = payload.get("text", "")
        try:
            body = json.loads(text)
        except ValueError:
            body = {"text": text}
        try:
            response = self.client.post(self.url, json=body, headers={"X-Alert-Recipient": recipient})
        except RETRYABLE as exc:
            raise RetryLater(f"webhook: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After", "")
            raise RetryLater(
                f"webhook: HTTP {response.status_code}",
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        if response.status_code >= 400:
            raise Undeliverable(f"webhook: HTTP {response.status_code}", code=str(response.status_code))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
