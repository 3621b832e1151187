"""What a channel must provide for the outbox worker to deliver through it."""

from dataclasses import dataclass
from typing import Any, Protocol


class DeliveryError(Exception):
    """A delivery attempt failed."""


@dataclass
class RetryLater(DeliveryError):
    """A transient failure (network, rate limit, token refresh); try again after `retry_after` seconds if given."""

    reason: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass
class Undeliverable(DeliveryError):
    """A permanent failure: retrying cannot help (window closed, quota used, bot blocked, not permitted)."""

    reason: str
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}" if self.code else self.reason


class Sender(Protocol):
    """Delivers one outbox payload ({"text": str, "options": [{"label", "payload"}]}) to one recipient.

    Returns normally on success; raises RetryLater or Undeliverable otherwise. Called from a worker thread.
    """

    channel: str

    def send(self, recipient: str, payload: dict[str, Any]) -> None: ...
