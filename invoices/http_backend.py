"""Invoice status from the merchant platform's REST API (INVOICE_BACKEND=http), with retries, a breaker and a cache.

Remote contract
---------------
`GET {INVOICE_API_URL}/invoices/{number}?code={发票代码}` (no `code` for 数电票), header
`Authorization: Bearer {INVOICE_API_TOKEN}` (omitted when no token is configured).

* 200 → a JSON object: number, code, status, seller_tax_id, buyer_tax_id, buyer_name, total (decimal string or number),
  issued_at and updated_at (ISO 8601; a time without an offset is Beijing time, UTC+8), failure_reason,
  red_confirmation (确认单 code "01"–"11"), delivered_via. Only `status` is required; a missing `number` means the
  requested one, a different `number` is an error. Unknown fields are ignored.
* 404 → the platform does not know the invoice: `Lookup(record=None)`. Right after issuing this is normal for a while.
* anything else is an error → `BackendUnavailable` (details below).

`status` (`parse_status` in invoices.backend) may be one of our
InvoiceStatus values (any case), a Chinese label, or a 诺税通-style code:
20 开票中 → issuing, 21 开票成功签章中 → signing, 2 开票完成 → issued, 22 开票失败 → failed,
24 开票成功签章失败 → sign_failed, 3 已作废 → voided,
31 作废中 → issued (the invoice stays valid until the void completes, and the void can still be refused;
the short cache shows 3 soon after it does).
An unknown status makes the answer unusable: it is an error like malformed JSON.

Behaviour
---------
* Each attempt has explicit connect/read/write/pool timeouts. Connection errors, timeouts, dropped connections and 5xx
  are retried (`retries` more times, backoff 0.1 s, 0.2 s, …); 4xx never are. Worst case a lookup takes about
  (retries + 1) × attempt time + backoff, so keep timeout × (retries + 1) inside the channel's reply budget.
* Failures counted by the circuit breaker: exhausted retries, 401/403 (wrong token: logged, never the token itself),
  429, malformed or unusable 200 answers, other unexpected statuses. Other 4xx (e.g. 400 for a number the platform
  rejects) raise BackendUnavailable but prove the API is up, so they count as a success for the breaker.
* While the circuit is open no request is made. In half-open state one worker makes a single trial attempt (no
  retries); every other lookup fails fast.
* Cache in the Store (shared by workers): answers are kept `cache_seconds` (not-found answers at most
  `not_found_seconds`, default 15 s, since a just-issued invoice shows up soon) and returned with `cached=True` and the
  original `fetched_at`. Separately a "last known" copy of each found record is kept `last_known_seconds` (default
  24 h); when the API cannot answer it is returned instead of raising (stale, but `fetched_at` tells the bot how old).
  A 404 deletes that copy; a stale not-found is never served (the invoice may exist by now), so that case raises.
"""

import dataclasses
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx

from core.clock import beijing_if_naive
from core.settings import Settings, get_settings
from core.store import Store
from invoices.backend import BackendUnavailable, InvoiceRecord, InvoiceStatus, Lookup, parse_status
from invoices.breaker import CircuitBreaker

log = logging.getLogger(__name__)

NOT_FOUND_SECONDS = 15.0
LAST_KNOWN_SECONDS = 24 * 3600.0
BACKOFF_SECONDS = 0.1
CACHE_VERSION = "v1"
RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


# Answers the shared table (invoices.backend.STATUS_ALIASES) does not know yet; candidates to move there.
def parse_record(data: Any, *, number: str) -> InvoiceRecord:
    """The record in a 200 answer for `number`; ValueError when the payload is unusable."""
    if not isinstance(data, dict):
        raise ValueError("answer is not a JSON object")
    answered = _text(data, "number")
    if answered is not None and answered != number:
        raise ValueError("answer is for another invoice number")
    return InvoiceRecord(
        number=number,
        status=parse_status(data.get("status")),
        code=_text(data, "code"),
        seller_tax_id=_text(data, "seller_tax_id"),
        buyer_tax_id=_text(data, "buyer_tax_id"),
        buyer_name=_text(data, "buyer_name"),
        total=_decimal(data.get("total")),
        issued_at=_datetime(data.get("issued_at")),
        failure_reason=_text(data, "failure_reason"),
        red_confirmation=_red_confirmation(data.get("red_confirmation")),
        delivered_via=_text(data, "delivered_via"),
        updated_at=_datetime(data.get("updated_at")),
    )


def record_to_json(record: InvoiceRecord) -> dict[str, Any]:
    """A JSON-serialisable dict of a record (datetimes as ISO 8601)."""
    data = dataclasses.asdict(record)
    data["status"] = record.status.value
    for name in ("issued_at", "updated_at"):
        data[name] = data[name].isoformat() if data[name] else None
    return data


def record_from_json(data: dict[str, Any]) -> InvoiceRecord:
    """The record `record_to_json` made."""
    names = {item.name for item in dataclasses.fields(InvoiceRecord)}
    values = {key: value for key, value in data.items() if key in names}
    values["status"] = InvoiceStatus(values["status"])
    for name in ("issued_at", "updated_at"):
        if values.get(name):
            values[name] = datetime.fromisoformat(values[name])
    return InvoiceRecord(**values)


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value.strip() or None


def _decimal(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("total is not a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError("total is not a number") from exc
    if not amount.is_finite():
        raise ValueError("total is not a number")
    return str(amount)


def _datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("timestamp is not a string")
    return beijing_if_naive(datetime.fromisoformat(value.strip()))


def _red_confirmation(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:02d}"
    if value is None or isinstance(value, str):
        return (value or "").strip() or None
    raise ValueError("red_confirmation is not a code")


class _Failure(BackendUnavailable):
    """The API is unhealthy (counts toward the breaker)."""


class HttpInvoiceBackend:
    """Invoice lookups against the merchant platform's API."""

    name = "http"

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None,
        store: Store,
        timeout: float,
        retries: int,
        cache_seconds: float,
        breaker: CircuitBreaker,
        not_found_seconds: float = NOT_FOUND_SECONDS,
        last_known_seconds: float = LAST_KNOWN_SECONDS,
        backoff: float = BACKOFF_SECONDS,
    ) -> None:
        self.store = store
        self.retries = max(0, retries)
        self.cache_seconds = cache_seconds
        self.not_found_seconds = min(cache_seconds, not_found_seconds)
        self.last_known_seconds = last_known_seconds
        self.backoff = backoff
        self.breaker = breaker
        headers = {"Accept": "application/json", "User-Agent": "merchant-assist"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(connect=timeout, read=timeout, write=timeout, pool=timeout),
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, store: Store, *, settings: Settings | None = None) -> "HttpInvoiceBackend":
        """The backend configured by INVOICE_API_* and INVOICE_CACHE/BREAKER_* settings."""
        settings = settings or get_settings()
        if not settings.invoice_api_url:
            raise ValueError("INVOICE_API_URL is required when INVOICE_BACKEND=http")
        timeout = settings.invoice_api_timeout_seconds
        breaker = CircuitBreaker(
            store=store,
            name="invoice-api",
            failures=settings.invoice_breaker_failures,
            reset_seconds=settings.invoice_breaker_reset_seconds,
            trial_seconds=4 * timeout + 1,
        )
        return cls(
            base_url=settings.invoice_api_url,
            token=settings.invoice_api_token,
            store=store,
            timeout=timeout,
            retries=settings.invoice_api_retries,
            cache_seconds=settings.invoice_cache_seconds,
            breaker=breaker,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def lookup(self, *, code: str | None, number: str) -> Lookup:
        """The invoice from the cache or the API; the last known copy when the API cannot answer."""
        code = code or None
        cached = self._cached(self._key("fresh", code, number))
        if cached is not None:
            return cached
        try:
            lookup = self._fetch(code=code, number=number)
        except BackendUnavailable as exc:
            stale = self._cached(self._key("last", code, number))
            if stale is None:
                raise
            log.info("invoice API unavailable (%s); answering with the copy fetched at %s", exc, stale.fetched_at)
            return stale
        self._remember(code, number, lookup)
        return lookup

    def _fetch(self, *, code: str | None, number: str) -> Lookup:
        trial = self.breaker.allow()
        try:
            record = self._request(code=code, number=number, attempts=1 if trial else self.retries + 1)
        except _Failure as exc:
            self.breaker.failed()
            raise BackendUnavailable(str(exc)) from exc
        except BackendUnavailable:
            self.breaker.succeeded()
            raise
        self.breaker.succeeded()
        return Lookup(record=record, source=self.name)

    def _request(self, *, code: str | None, number: str, attempts: int) -> InvoiceRecord | None:
        url = f"/invoices/{quote(number, safe='')}"
        params = {"code": code} if code else None
        reason = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.get(url, params=params)
            except RETRYABLE as exc:
                reason = type(exc).__name__
            except httpx.HTTPError as exc:
                raise _Failure(f"invoice API request failed: {type(exc).__name__}") from exc
            else:
                if response.status_code < 500:
                    return self._answer(response, number=number)
                reason = f"HTTP {response.status_code}"
            log.warning("invoice API attempt %d/%d for %s failed: %s", attempt + 1, attempts, number, reason)
        raise _Failure(f"invoice API failed {attempts} time(s): {reason}")

    def _answer(self, response: httpx.Response, *, number: str) -> InvoiceRecord | None:
        status = response.status_code
        if status == 200:
            try:
                return parse_record(response.json(), number=number)
            except ValueError as exc:  # includes JSONDecodeError and unknown statuses
                log.warning("invoice API answered %s unusably: %s", number, exc)
                raise _Failure(f"invoice API answer unusable: {exc}") from exc
        if status == 404:
            return None
        if status in (401, 403):
            log.error("invoice API rejected our token (HTTP %d): check INVOICE_API_TOKEN", status)
            raise _Failure(f"invoice API rejected the token (HTTP {status})")
        if status == 429:
            raise _Failure("invoice API rate limit (HTTP 429)")
        if 400 <= status < 500:
            log.warning("invoice API refused the lookup of %s (HTTP %d)", number, status)
            raise BackendUnavailable(f"invoice API refused the lookup (HTTP {status})")
        raise _Failure(f"invoice API answered HTTP {status}")

    def _key(self, kind: str, code: str | None, number: str) -> str:
        return f"invoices:{self.name}:{CACHE_VERSION}:{kind}:{code or '-'}:{number}"

    def _remember(self, code: str | None, number: str, lookup: Lookup) -> None:
        record = lookup.record
        entry = {
            "record": record_to_json(record) if record else None,
            "fetched_at": lookup.fetched_at.isoformat(),
        }
        ttl = self.cache_seconds if record else self.not_found_seconds
        if ttl > 0:
            self.store.set_json(self._key("fresh", code, number), entry, ttl=ttl)
        if record is None:
            self.store.delete(self._key("last", code, number))
        elif self.last_known_seconds > 0:
            self.store.set_json(self._key("last", code, number), entry, ttl=self.last_known_seconds)

    def _cached(self, key: str) -> Lookup | None:
        try:
            entry = self.store.get_json(key)
            if entry is None:
                return None
            record = record_from_json(entry["record"]) if entry["record"] is not None else None
            fetched_at = datetime.fromisoformat(entry["fetched_at"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring an unreadable cache entry %s: %s", key, type(exc).__name__)
            self.store.delete(key)
            return None
        return Lookup(record=record, fetched_at=fetched_at.astimezone(UTC), source=self.name, cached=True)
