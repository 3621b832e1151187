"""A circuit breaker whose state lives in the Store, so every worker process sees the same circuit.

State is derived from two keys:

* `breaker:{name}:failures` — consecutive failures (a counter; any success deletes it);
* `breaker:{name}:open` — present while the circuit is open; it expires after `reset_seconds`.

CLOSED while failures < threshold; OPEN while the open key lives; HALF_OPEN when failures >= threshold and the open
key has expired. In HALF_OPEN exactly one caller wins `store.add` on `breaker:{name}:trial` and makes the trial call;
everyone else is rejected. The trial's success closes the circuit, its failure re-opens it for `reset_seconds`. The
trial key expires after `trial_seconds`, so a worker that dies mid-trial does not keep the circuit half-open for ever.
"""

import logging
from enum import StrEnum

from core.store import Store
from invoices.backend import BackendUnavailable

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    """Where a circuit is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(BackendUnavailable):
    """The circuit is open (or another worker is making the half-open trial call): no call was made."""


class CircuitBreaker:
    """Opens after `failures` consecutive failures; after `reset_seconds` lets one trial call through."""

    def __init__(
        self,
        *,
        store: Store,
        name: str,
        failures: int,
        reset_seconds: float,
        trial_seconds: float = 30.0,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        self.store = store
        self.name = name
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self.trial_seconds = trial_seconds
        self.failures_key = f"breaker:{name}:failures"
        self.open_key = f"breaker:{name}:open"
        self.trial_key = f"breaker:{name}:trial"

    def state(self) -> BreakerState:
        """The circuit's current state."""
        if self.store.get(self.open_key) is not None:
            return BreakerState.OPEN
        if int(self.store.get(self.failures_key) or 0) >= self.threshold:
            return BreakerState.HALF_OPEN
        return BreakerState.CLOSED

    def allow(self) -> bool:
        """Permission for one call: True when it is the half-open trial; raises CircuitOpen when refused."""
        state = self.state()
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and self.store.add(self.trial_key, "1", ttl=self.trial_seconds):
            log.info("circuit %s half-open: making a trial call", self.name)
            return True
        raise CircuitOpen(f"circuit {self.name} is {state}")

    def succeeded(self) -> None:
        """Record a successful call: the circuit closes."""
        if self.store.get(self.failures_key) is None:
            return
        self.store.delete(self.failures_key)
        self.store.delete(self.open_key)
        self.store.delete(self.trial_key)
        log.info("circuit %s closed", self.name)

    def failed(self) -> None:
        """Record a failed call: the circuit opens at the threshold (a failed trial re-opens it)."""
        count = self.store.incr(self.failures_key)
        if count >= self.threshold:
            self.store.set(self.open_key, "1", ttl=self.reset_seconds)
            self.store.delete(self.trial_key)
            log.warning("circuit %s open for %ss after %d consecutive failures", self.name, self.reset_seconds, count)
