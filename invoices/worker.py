"""Re-checking invoice watches on a background thread (inside `serve` or `merchant-assist worker`)."""

from core.background import BatchWorker
from invoices.backend import InvoiceBackend
from invoices.flows import check_due_watches

WATCH_POLL_SECONDS = 5.0


class WatchWorker(BatchWorker):
    """Re-checks due invoice watches; several processes may run one, each watch is leased to one of them."""

    name = "watch-worker"

    def __init__(self, backend: InvoiceBackend, *, limit: int = 50, poll_seconds: float = WATCH_POLL_SECONDS) -> None:
        super().__init__(limit=limit, poll_seconds=poll_seconds)
        self.backend = backend

    def run_once(self) -> int:
        """Check one batch of due watches; return how many were checked."""
        return check_due_watches(backend=self.backend, limit=self.limit)
