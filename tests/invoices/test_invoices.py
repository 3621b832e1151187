"""Stored invoices, the feed API and CSV import, authorised status lookups and invoice watches, on each database."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from core.clock import utc
from core.database import session_scope
from core.outbox.models import OutboxMessage
from core.store import MemoryStore
from invoices import explain, flows, service, watches
from invoices.backend import BackendUnavailable, InvoiceRecord, InvoiceStatus, Lookup, parse_status
from invoices.models import InvoiceWatch
from invoices.sql_backend import SqlInvoiceBackend
from merchants import service as merchants

ADMIN = {"Authorization": "Bearer test-admin-token"}
SELLER = "91110108MA01ABCD5T"
OTHER = "91110000600037341L"
DIGITAL = "25112000000012345678"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def invoice(number: str = DIGITAL, status: str = "issued", seller: str = SELLER, **extra) -> dict:
    return {"number": number, "status": status, "seller_tax_id": seller, **extra}


@pytest.fixture
def client(app_env):
    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def migrated(app_env):
    from bot.bootstrap import prepare_database

    prepare_database()
    return app_env


def feed(client, *rows: dict, headers=ADMIN):
    return client.post("/api/invoices", json={"invoices": list(rows)}, headers=headers)


def bind(channel: str, user_id: str, tax_id: str = SELLER, name: str = "甲公司") -> int:
    """A merchant owning `tax_id` with `channel:user_id` bound to it."""
    with session_scope() as db_session:
        merchant = merchants.get_by_tax_id(db_session=db_session, tax_id=tax_id) or merchants.create(
            db_session=db_session, name=name, tax_ids=[tax_id]
        )
        code, _ = merchants.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=60)
        result = merchants.bind(
            db_session=db_session, store=MemoryStore(), channel=channel, user_id=user_id, tax_id=tax_id, code=code
        )
        assert result.outcome == "bound"
        return merchant.id


# --- feed API and CSV -------------------------------------------------------------------------------------


def test_feed_upserts_by_code_and_number(client):
    assert feed(client, invoice(status="开具中"), invoice("12345678", code="011002200111")).json() == {"written": 2}
    assert feed(client, invoice(status="2", total="113.00")).json() == {"written": 1}
    with session_scope() as db_session:
        digital = service.get(db_session=db_session, code=None, number=DIGITAL)
        paper = service.get(db_session=db_session, code="011002200111", number="12345678")
        assert (digital.status, digital.total) == ("issued", "113.00")
        assert paper.status == "issued"
        assert service.get(db_session=db_session, code=None, number="12345678") is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (invoice(number="2511200000001234567"), "20 digits"),
        (invoice(number="1234567", code="011002200111"), "8 digits"),
        (invoice(status="不知道"), "unknown invoice status"),
        (invoice(seller=None), "seller_tax_id or buyer_tax_id"),
        (invoice(seller="91110108MA01ABCDOT"), "seller_tax_id"),
        (invoice(code="0110022"), "10 or 12 digits"),
    ],
)
def test_feed_rejects_bad_rows_with_a_reason_and_writes_nothing(client, row, reason):
    response = feed(client, invoice("25112000000099999999"), row)
    assert response.status_code == 422
    assert reason in response.text
    with session_scope() as db_session:
        assert service.get(db_session=db_session, code=None, number="25112000000099999999") is None


def test_feed_needs_a_token(client, monkeypatch):
    assert feed(client, invoice(), headers={}).status_code == 401
    assert feed(client, invoice(), headers={"Authorization": "Bearer wrong"}).status_code == 401
    monkeypatch.setenv("INVOICE_FEED_TOKEN", "platform-secret")
    from core.settings import get_settings

    get_settings.cache_clear()
    assert feed(client, invoice(), headers={"Authorization": "Bearer platform-secret"}).status_code == 200
    assert feed(client, headers=ADMIN).status_code == 422


def test_csv_import_reports_bad_rows_and_writes_the_rest(migrated):
    text = (
        "number,code,status,seller_tax_id,buyer_name,total,failure_reason\n"
        f"{DIGITAL},,开票失败,{SELLER},乙公司,100.00,购买方税号校验失败\n"
        f"１２３４５６７８,011002200111,已开具,{SELLER},,,\n"
        f"123,,issued,{SELLER},,,\n"
    )
    with session_scope() as db_session:
        report = service.import_csv(db_session=db_session, stream=io.StringIO(text))
    assert (report.rows, report.written) == (3, 2)
    assert [line for line, _ in report.errors] == [4]
    with session_scope() as db_session:
        failed = service.get(db_session=db_session, code=None, number=DIGITAL)
        assert (failed.status, failed.failure_reason) == ("failed", "购买方税号校验失败")
        assert service.get(db_session=db_session, code="011002200111", number="12345678") is not None


def test_csv_without_the_needed_columns_is_refused(migrated):
    with session_scope() as db_session, pytest.raises(ValueError, match="number and status"):
        service.import_csv(db_session=db_session, stream=io.StringIO("foo,bar\n1,2\n"))


def test_cli_imports_a_csv(app_env, tmp_path):
    from typer.testing import CliRunner

    from bot.cli import app

    path = tmp_path / "invoices.csv"
    path.write_text(f"number,status,seller_tax_id\n{DIGITAL},已开具,{SELLER}\nbad,issued,{SELLER}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["invoices", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert "1 written" in result.output and "line 3" in result.output


# --- statuses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("issued", "issued"),
        ("已开具", "issued"),
        ("22", "failed"),
        ("签章失败", "sign_failed"),
        ("RED_FULL", "red_full"),
    ],
)
def test_status_aliases(value, status):
    assert parse_status(value) == InvoiceStatus(status)


@pytest.mark.parametrize("status", list(InvoiceStatus))
def test_every_status_has_a_meaning_and_a_next_step(status):
    text = explain.explain(InvoiceRecord(number=DIGITAL, status=status)).text
    assert explain.LABELS[status] in text and explain.NEXT_STEPS[status] in text


@pytest.mark.parametrize(
    ("reason", "topic"),
    [
        ("可用授信额度不足", "quota_insufficient"),
        ("购买方纳税人识别号校验失败", "buyer_taxid_invalid"),
        ("超过离线开票限定时长", "issue_offline_limit"),
        ("系统繁忙，请稍后再试", "busy_server"),
        ("未知错误", "issue_failed_generic"),
    ],
)
def test_failure_reasons_link_to_their_topic(reason, topic):
    record = InvoiceRecord(number=DIGITAL, status=InvoiceStatus.FAILED, failure_reason=reason)
    explained = explain.explain(record)
    assert explained.topic == topic and reason in explained.text


def test_freshness_says_how_old_the_data_is():
    now = T0 + timedelta(minutes=7)
    assert "7 分钟前" in explain.freshness(Lookup(None, fetched_at=T0, cached=True), now)
    assert "刚刚" in explain.freshness(Lookup(None, fetched_at=now), now)


# --- authorised lookups -------------------------------------------------------------------------------------


def lookup(channel: str, user_id: str, number: str = DIGITAL, code: str | None = None):
    with session_scope() as db_session:
        return flows.lookup_for(
            db_session=db_session,
            backend=SqlInvoiceBackend(),
            channel=channel,
            user_id=user_id,
            code=code,
            number=number,
        )


def test_a_merchant_sees_its_own_invoices_only(client):
    feed(client, invoice(), invoice("25112000000087654321", seller=OTHER, buyer_tax_id=None))
    bind("wechat", "alice")
    bind("wechat", "bob", tax_id=OTHER, name="乙公司")
    mine = lookup("wechat", "alice")
    assert mine.kind == "found" and mine.lookup.record.number == DIGITAL
    foreign, missing = (
        lookup("wechat", "alice", "25112000000087654321"),
        lookup("wechat", "alice", "25112000000000000001"),
    )
    assert foreign.kind == missing.kind == "not_found"
    assert foreign.lookup.record is None, "another merchant's invoice must look exactly like a missing one"
    assert lookup("wechat", "bob", "25112000000087654321").kind == "found"
    assert lookup("telegram", "alice").kind == "unbound", "bindings are per channel and user"


def test_the_buyer_sees_the_invoice_too(client):
    feed(client, invoice(seller=OTHER, buyer_tax_id=SELLER))
    bind("wechat", "alice")
    assert lookup("wechat", "alice").kind == "found"


class DownBackend:
    name = "down"

    def lookup(self, *, code, number):
        raise BackendUnavailable("timeout")


def test_backend_outage_is_reported_as_unavailable(client):
    bind("wechat", "alice")
    with session_scope() as db_session:
        answer = flows.lookup_for(
            db_session=db_session, backend=DownBackend(), channel="wechat", user_id="alice", code=None, number=DIGITAL
        )
    assert answer.kind == "unavailable"


# --- watches ----------------------------------------------------------------------------------------------------


def add_watch(user_id: str = "alice", number: str = DIGITAL, now: datetime = T0) -> int:
    with session_scope() as db_session:
        return watches.add(
            db_session=db_session,
            channel="wechat",
            user_id=user_id,
            code=None,
            number=number,
            last_status=None,
            first_check_seconds=60,
            max_hours=72,
            now=now,
        ).id


def outbox_texts() -> list[str]:
    with session_scope() as db_session:
        return [m.payload["text"] for m in db_session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]


def watch_row(watch_id: int) -> InvoiceWatch:
    with session_scope() as db_session:
        row = watches.get(db_session=db_session, watch_id=watch_id)
        db_session.expunge(row)
        return row


def test_watch_is_not_duplicated_and_can_be_listed_and_cancelled(client):
    first, again = add_watch(), add_watch()
    assert first == again
    other = add_watch(number="25112000000087654321")
    with session_scope() as db_session:
        assert [w.id for w in watches.list_active(db_session=db_session, channel="wechat", user_id="alice")] == [
            first,
            other,
        ]
        assert watches.cancel(db_session=db_session, channel="wechat", user_id="mallory", watch_id=first) == 0
        assert watches.cancel(db_session=db_session, channel="wechat", user_id="alice", watch_id=first) == 1
        assert [w.id for w in watches.list_active(db_session=db_session, channel="wechat", user_id="alice")] == [other]


def test_watch_reports_when_the_invoice_appears_and_changes_then_stops(client):
    bind("wechat", "alice")
    watch_id = add_watch()
    backend = SqlInvoiceBackend()
    assert flows.check_due_watches(backend=backend, now=T0 + timedelta(seconds=30)) == 0, "not due yet"
    assert flows.check_due_watches(backend=backend, now=T0 + timedelta(seconds=61)) == 1
    assert outbox_texts() == [], "nothing to report while the invoice is missing"
    row = watch_row(watch_id)
    assert (row.checks, utc(row.next_check_at)) == (1, T0 + timedelta(seconds=61 + 60))

    feed(client, invoice(status="开具中"))
    assert flows.check_due_watches(backend=backend, now=T0 + timedelta(seconds=200)) == 1
    assert len(outbox_texts()) == 1 and "开具中" in outbox_texts()[0]
    feed(client, invoice(status="已开具"))
    assert flows.check_due_watches(backend=backend, now=T0 + timedelta(hours=1)) == 1
    assert "已开具" in outbox_texts()[1]
    assert watch_row(watch_id).state == "done"
    assert flows.check_due_watches(backend=backend, now=T0 + timedelta(hours=5)) == 0


def test_watch_never_reveals_another_merchants_invoice(client):
    bind("wechat", "alice")
    feed(client, invoice(seller=OTHER))
    add_watch()
    flows.check_due_watches(backend=SqlInvoiceBackend(), now=T0 + timedelta(minutes=5))
    assert outbox_texts() == []


def test_watch_expires_with_a_notice(client):
    bind("wechat", "alice")
    watch_id = add_watch()
    assert flows.check_due_watches(backend=SqlInvoiceBackend(), now=T0 + timedelta(hours=73)) == 1
    assert watch_row(watch_id).state == "expired"
    assert len(outbox_texts()) == 1 and "已停止提醒" in outbox_texts()[0]


def test_watch_survives_a_restart(app_env, monkeypatch):
    """A watch made before the process stops is checked and delivered by the next process (fresh caches)."""
    from tests.conftest import clear_process_caches

    with TestClient(create_app()) as before:
        bind("wechat", "alice")
        add_watch(now=datetime.now(UTC) - timedelta(minutes=5))
        feed(before, invoice())
    clear_process_caches()
    monkeypatch.setattr(flows, "WATCH_LEASE_SECONDS", 120.0)
    from invoices.worker import WatchWorker

    worker = WatchWorker(SqlInvoiceBackend(), poll_seconds=0.05)
    worker.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not outbox_texts() and datetime.now(UTC) < deadline:
            worker.wake()
            import time

            time.sleep(0.05)
    finally:
        assert worker.stop(timeout=5)
    assert len(outbox_texts()) == 1 and "已开具" in outbox_texts()[0]


def test_two_claimers_never_take_the_same_watch(app_env):
    with TestClient(create_app()):
        ids = {add_watch(number=f"2511200000000000{i:04d}") for i in range(20)}
    now = T0 + timedelta(minutes=5)
    taken: list[int] = []
    for _ in range(3):
        with session_scope() as db_session:
            taken += watches.claim_due(db_session=db_session, limit=8, lease_seconds=60, now=now)
    assert sorted(taken) == sorted(ids)
    with session_scope() as db_session:
        assert watches.claim_due(db_session=db_session, limit=50, lease_seconds=60, now=now) == []
        assert (
            len(watches.claim_due(db_session=db_session, limit=50, lease_seconds=60, now=now + timedelta(minutes=2)))
            == 20
        )


def test_issue_time_reads_as_beijing_time_after_storage(client):
    """14:30 Beijing time fed with its offset (or without one) reads 14:30, never 22:30, after a round trip."""
    from console.templating import localtime

    feed(
        client,
        invoice(issued_at="2026-11-20T14:30:00+08:00"),
        invoice("25112000000087654321", issued_at="2026-11-20 14:30"),
    )
    for number in (DIGITAL, "25112000000087654321"):
        with session_scope() as db_session:
            record = service.to_record(service.get(db_session=db_session, code=None, number=number))
        assert record.issued_at == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
        assert "开票时间：2026-11-20 14:30" in explain.explain(record).text
        assert localtime(record.issued_at) == "2026-11-20 14:30"
