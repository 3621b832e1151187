"""Short-lived shared state: chat state with TTL, de-duplication keys and counters.

Two implementations with one interface: in-process (default) and Redis (`REDIS_URL`).
"""

import heapq
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import redis
from redis.exceptions import RedisError

from core import metrics
from core.settings import get_settings

KEY_PREFIX = "ma:"
STORE_ERRORS = (RedisError, OSError)
T = TypeVar("T")
log = logging.getLogger(__name__)


def best_effort(call: Callable[[], T], default: T, *, what: str) -> T:
    """The call's result, or `default` when the store is unreachable (logged and counted: the bot degrades)."""
    try:
        return call()
    except STORE_ERRORS as exc:
        metrics.INFRA_ERRORS.labels("store").inc()
        metrics.DEGRADED.inc()
        log.warning("store unavailable (%s), %s skipped", type(exc).__name__, what)
        return default


class Store(ABC):
    """Key-value store for values that may expire."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """Return the value of a key, or None when absent or expired."""

    @abstractmethod
    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        """Set a key, optionally expiring after `ttl` seconds."""

    @abstractmethod
    def add(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        """Set a key only when absent; return True when this call set it."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a key."""

    @abstractmethod
    def incr(self, key: str, *, amount: int = 1, ttl: float | None = None) -> int:
        """Add to a counter and return the new value; `ttl` applies when the counter is created."""

    @abstractmethod
    def ping(self) -> bool:
        """Return True when the store is reachable."""

    def get_json(self, key: str) -> Any:
        """Return a JSON value, or None."""
        raw = self.get(key)
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store a JSON-serialisable value."""
        self.set(key, json.dumps(value, ensure_ascii=False), ttl=ttl)

    def get_many(self, keys: list[str]) -> list[str | None]:
        """The values of several keys (None where missing), in one round trip where the backend allows."""
        return [self.get(key) for key in keys]


class MemoryStore(Store):
    """In-process store for a single worker; the default. Expired keys are swept every SWEEP_EVERY writes; past
    `max_keys` keys, the least recently used are evicted."""

    SWEEP_EVERY = 256
    DEFAULT_MAX_KEYS = 100_000

    def __init__(self, clock=time.monotonic, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max(1, max_keys)
        self._data: OrderedDict[str, tuple[str, float | None]] = OrderedDict()  # least recently used first
        self._expiries: list[tuple[float, str]] = []  # heap of (expiry, key); stale entries are skipped
        self._writes = 0
        self._lock = threading.Lock()

    def key_count(self) -> int:
        """Keys held, expired ones not yet swept included (no __len__: an empty store must stay truthy)."""
        return len(self._data)

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _put(self, key: str, value: str, expires: float | None) -> None:
        """Write a key as the most recently used; sweep now and then, and evict past the cap."""
        self._data[key] = (value, expires)
        self._data.move_to_end(key)
        if expires is not None:
            heapq.heappush(self._expiries, (expires, key))
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0 or len(self._data) > self._max_keys:
            self._sweep()
        while len(self._data) > self._max_keys:
            evicted, _ = self._data.popitem(last=False)
            metrics.STORE_EVICTIONS.inc()
            log.debug("memory store full (%d keys): %s evicted", self._max_keys, evicted)

    def _sweep(self) -> None:
        """Drop every expired key (the heap holds each key's expiries; outdated ones are skipped)."""
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            expires, key = heapq.heappop(self._expiries)
            item = self._data.get(key)
            if item is not None and item[1] == expires:
                del self._data[key]
        if len(self._expiries) > 2 * len(self._data) + self.SWEEP_EVERY:  # mostly outdated entries: rebuild
            self._expiries = [(item[1], key) for key, item in self._data.items() if item[1] is not None]
            heapq.heapify(self._expiries)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        with self._lock:
            self._put(key, value, self._expiry(ttl))

    def add(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._put(key, value, self._expiry(ttl))
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def incr(self, key: str, *, amount: int = 1, ttl: float | None = None) -> int:
        with self._lock:
            current = self._live(key)
            if current is None:
                value, expires = amount, self._expiry(ttl)
            else:
                value, expires = int(current) + amount, self._data[key][1]
            self._put(key, str(value), expires)
            return value

    def ping(self) -> bool:
        return True


class RedisStore(Store):
    """Store shared by every worker, backed by Redis."""

    def __init__(self, url: str, *, prefix: str = KEY_PREFIX) -> None:
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
        )
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return self._prefix + key

    @staticmethod
    def _ms(ttl: float | None) -> int | None:
        return None if ttl is None else max(1, int(ttl * 1000))

    def get(self, key: str) -> str | None:
        return self._redis.get(self._key(key))

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        self._redis.set(self._key(key), value, px=self._ms(ttl))

    def add(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        return bool(self._redis.set(self._key(key), value, px=self._ms(ttl), nx=True))

    def delete(self, key: str) -> None:
        self._redis.delete(self._key(key))

    def incr(self, key: str, *, amount: int = 1, ttl: float | None = None) -> int:
        full = self._key(key)
        with self._redis.pipeline() as pipe:
            if ttl is not None:
                pipe.set(full, 0, px=self._ms(ttl), nx=True)
            pipe.incrby(full, amount)
            value = pipe.execute()[-1]
        return int(value)

    def get_many(self, keys: list[str]) -> list[str | None]:
        return self._redis.mget([self._key(key) for key in keys]) if keys else []

    def ping(self) -> bool:
        return bool(self._redis.ping())


def make_store(redis_url: str | None, *, max_keys: int = MemoryStore.DEFAULT_MAX_KEYS) -> Store:
    """Create the store for a Redis URL, or an in-process one (holding at most `max_keys` keys) when there is none."""
    return RedisStore(redis_url) if redis_url else MemoryStore(max_keys=max_keys)


@lru_cache
def get_store() -> Store:
    """Return the process-wide store for the configured REDIS_URL."""
    settings = get_settings()
    return make_store(settings.redis_url, max_keys=settings.memory_store_max_keys)
