"""HttpInvoiceBackend against a fake merchant-platform API: mapping, timeouts, retries, breaker, cache (each store)."""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.settings import Settings
from core.store import Store
from invoices.backend import BackendUnavailable, InvoiceRecord, InvoiceStatus, parse_status
from invoices.breaker import BreakerState, CircuitBreaker, CircuitOpen
from invoices.http_backend import HttpInvoiceBackend, parse_record, record_from_json, record_to_json
from tests.fakes.invoice_api import DROP, ERROR, MALFORMED, NORMAL, NOT_FOUND, SLOW, FakeInvoiceApi

TOKEN = "test-invoice-token"
CODE = "044001900111"
NUMBER = "12345678"
DIGITAL = "24442000000012345678"  # 数电票: 20 digits, no code

MakeBackend = Callable[..., HttpInvoiceBackend]


@pytest.fixture
def api() -> Iterator[FakeInvoiceApi]:
    """A running fake invoice API expecting TOKEN."""
    fake = FakeInvoiceApi(token=TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def make_backend(api: FakeInvoiceApi, store: Store) -> Iterator[MakeBackend]:
    """Build backends on the fake API and the store with fast test settings; closed afterwards."""
    made: list[HttpInvoiceBackend] = []

    def make(
        *,
        failures: int = 3,
        reset_seconds: float = 0.2,
        trial_seconds: float = 2.0,
        breaker: CircuitBreaker | None = None,
        **overrides,
    ) -> HttpInvoiceBackend:
        options = {
            "base_url": api.base_url,
            "token": TOKEN,
            "store": store,
            "timeout": 1.0,
            "retries": 2,
            "cache_seconds": 60.0,
            "backoff": 0.01,
        }
        options.update(overrides)
        breaker = breaker or CircuitBreaker(
            store=store,
            name="invoice-api",
            failures=failures,
            reset_seconds=reset_seconds,
            trial_seconds=trial_seconds,
        )
        backend = HttpInvoiceBackend(breaker=breaker, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# answers


def test_found_record_has_every_field(api, make_backend):
    api.add(
        number=NUMBER,
        code=CODE,
        status="已开具",
        seller_tax_id="91440300MA5FXXXX1A",
        buyer_tax_id="91110108MA01XXXX2B",
        buyer_name="北京某某科技有限公司",
        total="1130.00",
        issued_at="2024-05-01T10:00:00+08:00",
        failure_reason=None,
        red_confirmation="01",
        delivered_via="email",
        updated_at="2024-05-01 10:05:00",
    )
    before = datetime.now(UTC)

    lookup = make_backend().lookup(code=CODE, number=NUMBER)

    assert lookup.record == InvoiceRecord(
        number=NUMBER,
        code=CODE,
        status=InvoiceStatus.ISSUED,
        seller_tax_id="91440300MA5FXXXX1A",
        buyer_tax_id="91110108MA01XXXX2B",
        buyer_name="北京某某科技有限公司",
        total="1130.00",
        issued_at=datetime(2024, 5, 1, 2, 0, tzinfo=UTC),
        red_confirmation="01",
        delivered_via="email",
        updated_at=datetime(2024, 5, 1, 2, 5, tzinfo=UTC),  # no offset: Beijing time
    )
    assert lookup.source == "http" and lookup.cached is False
    assert before <= lookup.fetched_at <= datetime.now(UTC)
    [request] = api.requests
    assert request == {"path": f"/invoices/{NUMBER}", "query": {"code": CODE}, "authorization": f"Bearer {TOKEN}"}


def test_digital_invoice_is_looked_up_without_code(api, make_backend):
    api.add(number=DIGITAL, status="issued")

    lookup = make_backend().lookup(code=None, number=DIGITAL)

    assert lookup.record is not None and lookup.record.code is None
    assert api.requests[0]["query"] == {}


def test_not_found(api, make_backend):
    lookup = make_backend().lookup(code=CODE, number=NUMBER)

    assert lookup.record is None and lookup.cached is False
    assert api.request_count == 1


def test_numeric_status_code_from_the_api(api, make_backend):
    api.add(number=NUMBER, status=24, failure_reason="签章服务超时")

    record = make_backend().lookup(code=None, number=NUMBER).record

    assert record is not None
    assert record.status is InvoiceStatus.SIGN_FAILED and record.failure_reason == "签章服务超时"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("issued", InvoiceStatus.ISSUED),
        ("RED_FULL", InvoiceStatus.RED_FULL),
        (" sign_failed ", InvoiceStatus.SIGN_FAILED),
        ("开具中", InvoiceStatus.ISSUING),
        ("已开具", InvoiceStatus.ISSUED),
        ("开具失败", InvoiceStatus.FAILED),
        ("签章中", InvoiceStatus.SIGNING),
        ("签章失败", InvoiceStatus.SIGN_FAILED),
        ("已作废", InvoiceStatus.VOIDED),
        ("部分红冲", InvoiceStatus.RED_PARTIAL),
        ("已红冲", InvoiceStatus.RED_FULL),
        ("全额红冲", InvoiceStatus.RED_FULL),
        ("红冲中", InvoiceStatus.RED_PENDING),
        ("待确认", InvoiceStatus.RED_PENDING),
        ("已交付", InvoiceStatus.DELIVERED),
        (20, InvoiceStatus.ISSUING),
        ("21", InvoiceStatus.SIGNING),
        (2, InvoiceStatus.ISSUED),
        (22, InvoiceStatus.FAILED),
        (24, InvoiceStatus.SIGN_FAILED),
        (3, InvoiceStatus.VOIDED),
        (31, InvoiceStatus.ISSUED),  # 作废中: still valid until the void completes
    ],
)
def test_parse_status(value, expected):
    assert parse_status(value) is expected


@pytest.mark.parametrize("value", ["", "unknown", "99", 99, None, True, 2.0, ["issued"]])
def test_parse_status_rejects_unknown_values(value):
    with pytest.raises(ValueError):
        parse_status(value)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"number": NUMBER},  # no status
        {"number": "87654321", "status": "issued"},  # another invoice
        {"status": "issued", "total": "abc"},
        {"status": "issued", "issued_at": "yesterday"},
        {"status": "issued", "buyer_name": 42},
    ],
)
def test_parse_record_rejects_unusable_payloads(payload):
    with pytest.raises(ValueError):
        parse_record(payload, number=NUMBER)


def test_record_json_round_trip():
    record = parse_record(
        {"status": 2, "total": 113, "red_confirmation": 4, "issued_at": "2024-05-01T10:00:00Z", "code": ""},
        number=NUMBER,
    )
    assert record.total == "113" and record.red_confirmation == "04" and record.code is None

    assert record_from_json(record_to_json(record)) == record
    assert record_to_json(record)["issued_at"] == "2024-05-01T10:00:00+00:00"
    naive = parse_record({"status": "issued", "issued_at": "2024-05-01 10:00:00"}, number=NUMBER)
    assert naive.issued_at is not None and naive.issued_at.utcoffset() == timedelta(hours=8)
    assert naive.issued_at == datetime(2024, 5, 1, 10, tzinfo=timezone(timedelta(hours=8)))


# failures, retries and timeouts


def test_slow_api_times_out_after_retries(api, make_backend):
    api.set_mode(SLOW, seconds=1.0)
    backend = make_backend(timeout=0.1, retries=2)
    started = time.monotonic()

    with pytest.raises(BackendUnavailable):
        backend.lookup(code=CODE, number=NUMBER)

    assert api.request_count == 3
    assert time.monotonic() - started < 0.9


def test_server_errors_are_retried_then_unavailable(api, make_backend):
    api.set_mode(ERROR, status=503)

    with pytest.raises(BackendUnavailable):
        make_backend(retries=2).lookup(code=CODE, number=NUMBER)

    assert api.request_count == 3


def test_server_error_then_success(api, make_backend):
    api.add(number=NUMBER, status="issued")
    api.script(ERROR, DROP)

    lookup = make_backend(retries=2).lookup(code=None, number=NUMBER)

    assert lookup.record is not None and lookup.record.status is InvoiceStatus.ISSUED
    assert api.request_count == 3


def test_dropped_connections_are_retried(api, make_backend):
    api.set_mode(DROP)

    with pytest.raises(BackendUnavailable):
        make_backend(retries=1).lookup(code=CODE, number=NUMBER)

    assert api.request_count == 2


@pytest.mark.parametrize("status", [400, 422])
def test_client_errors_are_not_retried_and_do_not_trip_the_breaker(api, make_backend, status):
    api.set_mode(ERROR, status=status)
    backend = make_backend(failures=1)

    with pytest.raises(BackendUnavailable):
        backend.lookup(code=CODE, number=NUMBER)

    assert api.request_count == 1
    assert backend.breaker.state() is BreakerState.CLOSED


def test_not_found_mode_answers_none_for_known_invoices(api, make_backend):
    api.add(number=NUMBER, status="issued")
    api.set_mode(NOT_FOUND)

    assert make_backend().lookup(code=None, number=NUMBER).record is None
    assert api.request_count == 1


def test_wrong_token_is_logged_not_retried_and_trips_the_breaker(api, make_backend, caplog):
    backend = make_backend(token="wrong-secret-token", failures=1)

    with caplog.at_level(logging.WARNING), pytest.raises(BackendUnavailable, match="401"):
        backend.lookup(code=CODE, number=NUMBER)

    assert api.request_count == 1
    assert "INVOICE_API_TOKEN" in caplog.text
    assert "wrong-secret-token" not in caplog.text
    assert backend.breaker.state() is BreakerState.OPEN


def test_no_token_sends_no_authorization_header(api, make_backend):
    api.token = None
    api.add(number=NUMBER, status="issued")

    assert make_backend(token=None).lookup(code=None, number=NUMBER).record is not None
    assert api.requests[0]["authorization"] is None


@pytest.mark.parametrize("status", [MALFORMED, "bogus-status"])
def test_unusable_answer_is_a_backend_error(api, make_backend, status):
    if status == MALFORMED:
        api.set_mode(MALFORMED)
    else:
        api.add(number=NUMBER, status=status)
    backend = make_backend(failures=1)

    with pytest.raises(BackendUnavailable, match="unusable"):
        backend.lookup(code=None, number=NUMBER)

    assert api.request_count == 1  # not retried
    assert backend.breaker.state() is BreakerState.OPEN  # but counted


# circuit breaker


def trip(backend: HttpInvoiceBackend, api: FakeInvoiceApi, failures: int) -> None:
    """Fail `failures` lookups (one request each) so the circuit opens."""
    api.set_mode(ERROR, status=500)
    for index in range(failures):
        with pytest.raises(BackendUnavailable):
            backend.lookup(code=None, number=f"9000000{index}")
    assert backend.breaker.state() is BreakerState.OPEN


def test_circuit_opens_after_consecutive_failures_and_stops_requests(api, make_backend):
    backend = make_backend(failures=3, retries=0, reset_seconds=5.0)
    trip(backend, api, 3)
    assert api.request_count == 3

    for _ in range(5):
        with pytest.raises(CircuitOpen):
            backend.lookup(code=None, number=NUMBER)

    assert api.request_count == 3


def test_success_resets_the_failure_count(api, make_backend):
    api.add(number=NUMBER, status="issued")
    backend = make_backend(failures=2, retries=0, cache_seconds=0, last_known_seconds=0)
    api.script(ERROR)

    with pytest.raises(BackendUnavailable):
        backend.lookup(code=None, number=NUMBER)
    backend.lookup(code=None, number=NUMBER)
    api.script(ERROR)
    with pytest.raises(BackendUnavailable):
        backend.lookup(code=None, number=NUMBER)

    assert backend.breaker.state() is BreakerState.CLOSED


def test_circuit_is_shared_by_workers_through_the_store(api, make_backend):
    worker_a, worker_b = make_backend(failures=2, retries=0, reset_seconds=5.0), make_backend(failures=2, retries=0)
    trip(worker_a, api, 2)

    with pytest.raises(CircuitOpen):
        worker_b.lookup(code=None, number=NUMBER)

    assert api.request_count == 2


def test_half_open_lets_one_trial_through_and_success_closes(api, make_backend):
    backend = make_backend(failures=2, retries=2, reset_seconds=0.2)
    trip(backend, api, 2)
    requests_when_open = api.request_count
    api.add(number=NUMBER, status="issued")
    api.set_mode(SLOW, seconds=0.3)
    time.sleep(0.25)
    assert backend.breaker.state() is BreakerState.HALF_OPEN

    results: list = []
    trial = threading.Thread(target=lambda: results.append(backend.lookup(code=None, number=NUMBER)))
    trial.start()
    wait_for(lambda: api.request_count == requests_when_open + 1)
    with pytest.raises(CircuitOpen):  # the trial is in flight: everyone else fails fast
        backend.lookup(code=None, number="87654321")
    trial.join(timeout=2)

    assert results and results[0].record is not None
    assert api.request_count == requests_when_open + 1
    assert backend.breaker.state() is BreakerState.CLOSED
    api.set_mode(NORMAL)
    assert backend.lookup(code=None, number="87654321").record is None
    assert api.request_count == requests_when_open + 2


def test_failed_trial_reopens_without_retries(api, make_backend):
    backend = make_backend(failures=2, retries=2, reset_seconds=0.2)
    trip(backend, api, 2)
    before = api.request_count
    time.sleep(0.25)

    with pytest.raises(BackendUnavailable):
        backend.lookup(code=None, number=NUMBER)

    assert api.request_count == before + 1  # one trial attempt, no retries
    assert backend.breaker.state() is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        backend.lookup(code=None, number=NUMBER)
    assert api.request_count == before + 1


def test_breaker_admits_a_single_trial(store):
    breaker = CircuitBreaker(store=store, name="unit", failures=2, reset_seconds=0.1, trial_seconds=5)
    assert breaker.allow() is False
    breaker.failed()
    assert breaker.state() is BreakerState.CLOSED
    breaker.failed()
    assert breaker.state() is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        breaker.allow()
    time.sleep(0.15)

    assert breaker.allow() is True
    with pytest.raises(CircuitOpen):
        breaker.allow()
    breaker.succeeded()
    assert breaker.state() is BreakerState.CLOSED
    assert breaker.allow() is False


def test_breaker_trial_lock_expires(store):
    breaker = CircuitBreaker(store=store, name="unit", failures=1, reset_seconds=0.05, trial_seconds=0.1)
    breaker.failed()
    time.sleep(0.08)
    assert breaker.allow() is True  # this worker then dies without reporting
    time.sleep(0.12)

    assert breaker.allow() is True


# cache


def test_cache_hit_avoids_a_request_and_keeps_fetched_at(api, make_backend):
    api.add(number=NUMBER, code=CODE, status="issued", total="10.00")
    backend = make_backend()
    first = backend.lookup(code=CODE, number=NUMBER)

    second = backend.lookup(code=CODE, number=NUMBER)

    assert api.request_count == 1
    assert second.cached is True and second.source == "http"
    assert second.fetched_at == first.fetched_at
    assert second.record == first.record


def test_cache_is_per_code_and_number(api, make_backend):
    api.add(number=NUMBER, code=CODE, status="issued")
    backend = make_backend()
    backend.lookup(code=CODE, number=NUMBER)

    assert backend.lookup(code="044001900222", number=NUMBER).record is None
    assert backend.lookup(code=None, number=NUMBER).cached is False
    assert api.request_count == 3


def test_cache_expires(api, make_backend):
    api.add(number=NUMBER, status="issuing")
    backend = make_backend(cache_seconds=0.2)
    backend.lookup(code=None, number=NUMBER)
    api.add(number=NUMBER, status="issued")
    time.sleep(0.3)

    lookup = backend.lookup(code=None, number=NUMBER)

    assert lookup.cached is False and lookup.record is not None
    assert lookup.record.status is InvoiceStatus.ISSUED
    assert api.request_count == 2


def test_not_found_is_cached_for_a_shorter_time(api, make_backend):
    backend = make_backend(cache_seconds=30.0, not_found_seconds=0.2)
    backend.lookup(code=None, number=NUMBER)
    again = backend.lookup(code=None, number=NUMBER)
    assert again.cached is True and again.record is None
    assert api.request_count == 1
    api.add(number=NUMBER, status="issuing")  # the just-issued invoice appears
    time.sleep(0.3)

    lookup = backend.lookup(code=None, number=NUMBER)

    assert lookup.record is not None and lookup.cached is False
    assert api.request_count == 2


def test_stale_record_is_served_when_the_api_is_down(api, make_backend):
    api.add(number=NUMBER, status="issued")
    backend = make_backend(cache_seconds=0.1, failures=1, retries=0, reset_seconds=5.0)
    fresh = backend.lookup(code=None, number=NUMBER)
    time.sleep(0.2)
    api.set_mode(ERROR, status=502)

    stale = backend.lookup(code=None, number=NUMBER)  # the API fails, the circuit opens

    assert stale.cached is True and stale.record == fresh.record and stale.fetched_at == fresh.fetched_at
    assert backend.breaker.state() is BreakerState.OPEN
    assert backend.lookup(code=None, number=NUMBER).record == fresh.record  # circuit open: no request at all
    assert api.request_count == 2


def test_stale_not_found_is_not_served(api, make_backend):
    backend = make_backend(cache_seconds=0.1, retries=0)
    assert backend.lookup(code=None, number=NUMBER).record is None
    time.sleep(0.2)
    api.set_mode(ERROR)

    with pytest.raises(BackendUnavailable):
        backend.lookup(code=None, number=NUMBER)


def test_unreadable_cache_entry_is_ignored(api, make_backend, store):
    api.add(number=NUMBER, status="issued")
    backend = make_backend()
    store.set(backend._key("fresh", None, NUMBER), "{not json")

    assert backend.lookup(code=None, number=NUMBER).cached is False
    assert api.request_count == 1


# configuration


def test_from_settings(api, store):
    api.add(number=NUMBER, status="已交付")
    settings = Settings(
        invoice_api_url=api.base_url + "/",
        invoice_api_token=TOKEN,
        invoice_api_timeout_seconds=0.5,
        invoice_breaker_failures=4,
        invoice_breaker_reset_seconds=7,
    )
    backend = HttpInvoiceBackend.from_settings(store, settings=settings)
    try:
        record = backend.lookup(code=None, number=NUMBER).record
    finally:
        backend.close()

    assert record is not None and record.status is InvoiceStatus.DELIVERED
    assert backend.breaker.threshold == 4 and backend.breaker.reset_seconds == 7
    timeout = backend.client.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (0.5, 0.5, 0.5, 0.5)


def test_from_settings_needs_a_url(store):
    with pytest.raises(ValueError, match="INVOICE_API_URL"):
        HttpInvoiceBackend.from_settings(store, settings=Settings(invoice_api_url=None))
