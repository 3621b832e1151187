"""Merchant accounts and binding chat identities to them: codes expire, work once, and wrong tries are limited
(atomically, per identity and per taxpayer id) without strangers being able to lock the owner out."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from core.database import session_scope
from core.messages import IncomingMessage
from core.redact import mask
from core.settings import get_settings
from core.store import MemoryStore, get_store
from handlers.router import make_router
from merchants import service
from merchants.models import BindingCode
from ticketing.models import TicketEvent

ADMIN = {"Authorization": "Bearer test-admin-token"}
TAX_A = "91110108MA01ABCD5T"
TAX_B = "91110000600037341L"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LIMITS = service.BindingLimits(max_failures=3, window_seconds=600, per_tax_id_factor=2)


@pytest.fixture
def db(app_env):
    from bot.bootstrap import prepare_database

    prepare_database()
    return app_env


def make_merchant(tax_id: str = TAX_A, name: str = "甲公司") -> int:
    with session_scope() as db_session:
        return service.create(db_session=db_session, name=name, tax_ids=[tax_id]).id


def issue(merchant_id: int, ttl: float = 600, now: datetime = T0) -> str:
    with session_scope() as db_session:
        code, _ = service.issue_code(db_session=db_session, merchant_id=merchant_id, ttl_seconds=ttl, now=now)
        return code


def bind(store, user_id: str, code: str, tax_id: str = TAX_A, now: datetime = T0, channel: str = "wechat"):
    with session_scope() as db_session:
        return service.bind(
            db_session=db_session,
            store=store,
            channel=channel,
            user_id=user_id,
            tax_id=tax_id,
            code=code,
            limits=LIMITS,
            now=now,
        )


def tax_ids(user_id: str, channel: str = "wechat") -> set[str]:
    with session_scope() as db_session:
        return service.tax_ids_for(db_session=db_session, channel=channel, user_id=user_id)


def test_a_code_binds_once_and_only_for_its_merchant(db):
    store = MemoryStore()
    a, b = make_merchant(), make_merchant(TAX_B, "乙公司")
    code = issue(a)
    assert bind(store, "bob", code, tax_id=TAX_B).outcome == "rejected", "A's code must not bind to B"
    assert bind(store, "alice", code).outcome == "bound"
    assert tax_ids("alice") == {TAX_A}
    assert bind(store, "mallory", code).outcome == "rejected", "a used code is spent"
    assert tax_ids("mallory") == set()
    assert b != a


def test_an_expired_code_is_refused(db):
    store = MemoryStore()
    code = issue(make_merchant(), ttl=60)
    assert bind(store, "alice", code, now=T0 + timedelta(seconds=61)).outcome == "rejected"
    assert tax_ids("alice") == set()


def test_only_the_hash_of_a_code_is_stored(db):
    code = issue(make_merchant())
    with session_scope() as db_session:
        stored = db_session.query(BindingCode).one()
        assert code not in stored.code_hash and len(stored.code_hash) == 64


def test_wrong_tries_lock_the_identity_for_the_window(db):
    store = MemoryStore()
    code = issue(make_merchant())
    for guess in ("00000000", "00000001", "00000002"):
        assert bind(store, "mallory", guess).outcome == "rejected"
    result = bind(store, "mallory", code)
    assert result.outcome == "rate_limited", "even the right code is refused once the identity is locked"
    assert result.retry_after_seconds == LIMITS.window_seconds
    assert bind(store, "alice", code).outcome == "bound", "another identity is not locked"


def test_guesses_spread_over_identities_lock_the_taxpayer_id(db):
    store = MemoryStore()
    code = issue(make_merchant())
    for n in range(LIMITS.max_failures * LIMITS.per_tax_id_factor):
        assert bind(store, f"bot-{n // 2}", f"{n:08d}").outcome == "rejected"
    assert bind(store, "fresh-identity", code).outcome == "rate_limited"


def test_unknown_taxpayer_id_is_answered_like_a_wrong_code(db):
    store = MemoryStore()
    make_merchant()
    assert bind(store, "alice", "12345678", tax_id=TAX_B).outcome == "rejected"


def test_binding_again_moves_the_identity_and_unbind_removes_it(db):
    store = MemoryStore()
    a, b = make_merchant(), make_merchant(TAX_B, "乙公司")
    assert bind(store, "alice", issue(a)).outcome == "bound"
    assert bind(store, "alice", issue(b), tax_id=TAX_B).outcome == "bound"
    assert tax_ids("alice") == {TAX_B}
    with session_scope() as db_session:
        assert service.unbind(db_session=db_session, channel="wechat", user_id="alice") is True
        assert service.unbind(db_session=db_session, channel="wechat", user_id="alice") is False
    assert tax_ids("alice") == set()


def test_a_taxpayer_id_belongs_to_one_merchant(db):
    make_merchant()
    with session_scope() as db_session, pytest.raises(service.TaxIdTaken):
        service.create(db_session=db_session, name="冒名公司", tax_ids=[TAX_A.lower()])
    with session_scope() as db_session, pytest.raises(service.MerchantError, match=r"I、O、Z、S、V|字母"):
        service.create(db_session=db_session, name="错号公司", tax_ids=["91110108MA01ABCDOT"])


def test_admin_api_creates_merchants_and_issues_codes(app_env):
    with TestClient(create_app()) as client:
        created = client.post("/api/admin/merchants", json={"name": "甲公司", "tax_ids": [TAX_A]}, headers=ADMIN)
        assert created.status_code == 201, created.text
        merchant_id = created.json()["id"]
        assert created.json()["tax_ids"] == [TAX_A]
        clash = client.post("/api/admin/merchants", json={"name": "乙", "tax_ids": [TAX_A]}, headers=ADMIN)
        assert clash.status_code == 409
        bad = client.post("/api/admin/merchants", json={"name": "丙", "tax_ids": ["123"]}, headers=ADMIN)
        assert bad.status_code == 422
        issued = client.post(f"/api/admin/merchants/{merchant_id}/binding-codes", headers=ADMIN)
        assert issued.status_code == 201 and len(issued.json()["code"]) == 8
        assert client.post("/api/admin/merchants/999/binding-codes", headers=ADMIN).status_code == 404

        assert bind(MemoryStore(), "alice", issued.json()["code"], now=datetime.now(UTC)).outcome == "bound"
        shown = client.get(f"/api/admin/merchants/{merchant_id}", headers=ADMIN).json()
        assert [(b["channel"], b["user_id"]) for b in shown["bindings"]] == [("wechat", "alice")]
        removed = client.delete(f"/api/admin/merchants/{merchant_id}/bindings/wechat/alice", headers=ADMIN)
        assert removed.status_code == 204
        assert client.get(f"/api/admin/merchants/{merchant_id}", headers=ADMIN).json()["bindings"] == []

        for method, path in (
            ("get", "/api/admin/merchants"),
            ("post", f"/api/admin/merchants/{merchant_id}/binding-codes"),
        ):
            assert getattr(client, method)(path).status_code == 401


# --- limits strangers cannot turn against the owner ----------------------------------------------------------


def in_parallel(tries: list[tuple[str, str]], store, tax_id: str = TAX_A) -> list[str]:
    """Run every (identity, code) try at once, one thread each; the outcomes."""
    barrier = threading.Barrier(len(tries))

    def attempt(user_id: str, code: str) -> str:
        barrier.wait()
        return bind(store, user_id, code, tax_id=tax_id).outcome

    with ThreadPoolExecutor(max_workers=len(tries)) as pool:
        return list(pool.map(lambda args: attempt(*args), tries))


def test_parallel_tries_of_one_identity_never_pass_its_cap(db, store):
    make_merchant()
    outcomes = in_parallel([("mallory", f"{n:08d}") for n in range(24)], store)
    assert outcomes.count("rejected") == LIMITS.max_failures, outcomes  # tries whose code was looked at
    assert outcomes.count("rate_limited") == 24 - LIMITS.max_failures


def test_parallel_tries_over_rotating_identities_never_pass_the_taxpayer_ids_cap(db, store):
    make_merchant()
    outcomes = in_parallel([(f"bot-{n}", f"{n:08d}") for n in range(30)], store)
    assert outcomes.count("rejected") == LIMITS.per_tax_id, outcomes
    assert outcomes.count("rate_limited") == 30 - LIMITS.per_tax_id


def test_rotating_identities_cannot_lock_out_the_owners_fresh_code(db, store):
    merchant_id = make_merchant()
    old_code = issue(merchant_id)
    for n in range(LIMITS.per_tax_id + 10):
        bind(store, f"bot-{n}", f"{n:08d}")
    assert service.locked_since(store=store, tax_id=TAX_A) == T0
    frozen = bind(store, "owner", old_code, now=T0 + timedelta(seconds=1))
    assert (frozen.outcome, frozen.limited_by) == ("rate_limited", "tax_id"), "codes from before the lock are frozen"
    wrong = bind(store, "bot-x", "99999999", now=T0 + timedelta(seconds=1))
    assert (wrong.outcome, wrong.limited_by) == ("rate_limited", "tax_id"), "a wrong code is answered the same way"
    fresh = issue(merchant_id, now=T0 + timedelta(seconds=2))  # staff give the owner a new code
    assert bind(store, "owner", fresh, now=T0 + timedelta(seconds=3)).outcome == "bound"
    assert tax_ids("owner") == {TAX_A}


def test_the_owners_success_keeps_the_strangers_count(db, store):
    merchant_id = make_merchant()
    for n in range(LIMITS.per_tax_id - 1):
        assert bind(store, f"bot-{n}", f"{n:08d}").outcome == "rejected"
    assert bind(store, "owner", issue(merchant_id)).outcome == "bound"
    assert bind(store, "bot-last", "77777777").outcome == "rejected", "the last wrong try the cap allows"
    assert bind(store, "bot-more", "88888888").outcome == "rate_limited", "the owner's success reset nothing"
    assert service.locked_since(store=store, tax_id=TAX_A) is not None


def test_many_successes_do_not_lock_the_taxpayer_id(db, store):
    merchant_id = make_merchant()
    for n in range(LIMITS.per_tax_id * 2):
        assert bind(store, f"staff-{n}", issue(merchant_id)).outcome == "bound"
    assert service.locked_since(store=store, tax_id=TAX_A) is None


def test_admin_unlock_lets_codes_from_before_the_lock_bind_again(app_env):
    with TestClient(create_app()) as client:
        store = get_store()
        merchant_id = client.post(
            "/api/admin/merchants", json={"name": "甲公司", "tax_ids": [TAX_A]}, headers=ADMIN
        ).json()["id"]
        code = client.post(f"/api/admin/merchants/{merchant_id}/binding-codes", headers=ADMIN).json()["code"]
        now = datetime.now(UTC)
        for n in range(LIMITS.per_tax_id + 1):
            bind(store, f"bot-{n}", f"{n:08d}", now=now)
        assert bind(store, "owner", code, now=now).outcome == "rate_limited"

        assert client.post(f"/api/admin/merchants/{merchant_id}/unlock").status_code == 401
        unlocked = client.post(f"/api/admin/merchants/{merchant_id}/unlock", headers=ADMIN)
        assert unlocked.status_code == 200, unlocked.text
        assert unlocked.json() == {"merchant_id": merchant_id, "unlocked_tax_ids": [TAX_A]}
        assert service.locked_since(store=store, tax_id=TAX_A) is None
        assert bind(store, "owner", code, now=now).outcome == "bound"
        again = client.post(f"/api/admin/merchants/{merchant_id}/unlock", headers=ADMIN)
        assert again.json()["unlocked_tax_ids"] == []
        assert client.post("/api/admin/merchants/999/unlock", headers=ADMIN).status_code == 404


def test_a_lockout_writes_one_audit_event_with_the_taxpayer_id_masked(db, monkeypatch, caplog):
    monkeypatch.setenv("BINDING_MAX_FAILURES", "2")  # per taxpayer id: 2 × 4 wrong tries
    get_settings.cache_clear()
    router = make_router(store=MemoryStore())
    make_merchant()
    replies = []
    with caplog.at_level(logging.WARNING, logger="merchants.service"):
        for n in range(12):
            with session_scope() as db_session:
                message = IncomingMessage(channel="wechat", user_id=f"bot-{n // 2}", text=f"绑定 {TAX_A} {n:08d}")
                replies.append(router.handle(message, db_session=db_session).text)
    assert "重新获取绑定码" in replies[-1]
    with session_scope() as db_session:
        events = list(db_session.scalars(select(TicketEvent).where(TicketEvent.action == "binding_locked")))
    assert len(events) == 1, "one event per lockout, not one per refused try"
    assert events[0].after["tax_id"] == mask(TAX_A) != TAX_A
    assert events[0].after["wrong_tries"] == 8
    logged = [r.getMessage() for r in caplog.records if "binding_locked" in r.getMessage()]
    assert len(logged) == 1 and TAX_A not in logged[0] and mask(TAX_A) in logged[0]
