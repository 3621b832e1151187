"""Merchant accounts and binding chat identities to them: codes expire, work once, and wrong tries are limited."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from core.database import session_scope
from core.store import MemoryStore
from merchants import service
from merchants.models import BindingCode

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
