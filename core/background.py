"""Background work in batches on a daemon thread: the outbox delivery and the invoice watch both run this way."""

import logging
import threading

log = logging.getLogger(__name__)

MAX_IDLE_BACKOFF_SECONDS = 30.0


class BatchWorker:
    """Runs `run_once` every poll interval, at once when woken, and again straight away while batches come back
    full. Errors (a database outage, say) are logged and retried with a growing pause."""

    name = "batch-worker"

    def __init__(self, *, limit: int, poll_seconds: float) -> None:
        self.limit = limit
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def run_once(self) -> int:
        """Do one batch now; return how many items it took."""
        raise NotImplementedError

    def wake(self) -> None:
        """Make the thread look for work now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread (no-op when it is running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Ask the thread to finish its current batch and stop; return True when it has stopped."""
        self._stopping.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            pause = self._step()
            self._wake.wait(pause)
            self._wake.clear()

    def _step(self) -> float:
        """Do one batch; return how long to pause before the next."""
        try:
            taken = self.run_once()
        except Exception:
            self._failures += 1
            pause = min(MAX_IDLE_BACKOFF_SECONDS, max(self.poll_seconds, 0.1) * 2 ** min(self._failures, 10))
            log.exception("%s: batch failed; trying again in %.1f s", self.name, pause)
            return pause
        self._failures = 0
        return 0.0 if taken >= self.limit else self.poll_seconds
