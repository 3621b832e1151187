"""POST /api/chat admits only an integration's key or signed identity (or, in demo mode, a local caller), and keeps
each integration's users apart: a stranger never reaches another integration's conversation, binding, invoice
status or ticket."""

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bot.app import create_app
from core.conversation.models import ConversationTurn
from core.database import session_scope
from integrations import service
from invoices import service as invoice_service
from invoices.backend import InvoiceRecord, InvoiceStatus
from merchants import service as merchants
from merchants.models import ChatBinding
from tests.conftest import make_integration
from ticketing.models import Ticket, TicketMessage

SELLER = "91110108MA01ABCD5T"
NUMBER = "25112000000012345678"
ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(app_env, monkeypatch):
    monkeypatch.setenv("MATCHER_EMBEDDINGS", "false")
    monkeypatch.setenv("INBOUND_MESSAGES_PER_MINUTE", "0")
    with TestClient(create_app()) as test_client:
        yield test_client


def post(client, body: dict, headers: dict | None = None):
    return client.post("/api/chat", json=body, headers=headers or {})


def refused(response, status: int = 401) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    return detail


def test_a_call_without_credentials_is_refused_with_a_reason(client):
    detail = refused(post(client, {"user_id": "alice", "text": "你好"}))
    assert "credentials required" in detail
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count(ConversationTurn.id))) == 0


@pytest.mark.parametrize(
    "authorization",
    ["Bearer mak_wrong", "Bearer test-admin-token", "Basic dXNlcjpwYXNz", "mak_no_scheme", "Bearer "],
)
def test_a_wrong_key_is_refused(client, authorization):
    make_integration("shop")
    refused(post(client, {"user_id": "alice", "text": "你好"}, {"Authorization": authorization}))


def test_the_key_admits_its_integration_and_namespaces_the_user(client):
    caller = make_integration("shop")
    response = post(client, {"user_id": "alice", "text": "你好"}, caller.headers)
    assert response.status_code == 200 and response.json()["intent"] == "greeting"
    with session_scope() as db_session:
        users = set(db_session.scalars(select(ConversationTurn.user_id).where(ConversationTurn.channel == "api")))
        integration = service.get_by_slug(db_session=db_session, slug="shop")
        assert integration.last_used_at is not None
    assert users == {"shop:alice"}


def test_a_disabled_integration_is_forbidden_and_enabled_again_works(client):
    caller = make_integration("shop")
    assert client.post("/api/admin/integrations/shop/disable", headers=ADMIN).status_code == 200
    assert refused(post(client, {"user_id": "alice", "text": "你好"}, caller.headers), 403) == "integration disabled"
    signed = post(client, caller.signed("alice") | {"text": "你好"})
    assert refused(signed, 403) == "integration disabled"
    assert client.post("/api/admin/integrations/shop/enable", headers=ADMIN).status_code == 200
    assert post(client, {"user_id": "alice", "text": "你好"}, caller.headers).status_code == 200


def test_a_signed_identity_is_admitted_as_the_integrations_user(client):
    caller = make_integration("widget")
    response = post(client, caller.signed("bob") | {"text": "你好"})
    assert response.status_code == 200
    with session_scope() as db_session:
        assert db_session.scalar(select(ConversationTurn.user_id)) == "widget:bob"


def test_forged_expired_and_far_future_signatures_are_refused(client):
    caller = make_integration("widget")
    other = make_integration("other")
    now = int(time.time())

    def signed(user_id: str, expires: int, secret: str = caller.signing_secret, slug: str = "widget") -> dict:
        signature = service.sign(signing_secret=secret, user_id=user_id, expires=expires)
        return {"user_id": user_id, "integration": slug, "expires": expires, "signature": signature, "text": "你好"}

    assert refused(post(client, signed("bob", now + 60, secret=other.signing_secret))) == "invalid signature"
    assert refused(post(client, signed("bob", now + 60) | {"user_id": "carol"})) == "invalid signature"
    assert refused(post(client, signed("bob", now + 60) | {"expires": now + 120})) == "invalid signature"
    assert refused(post(client, signed("bob", now + 60) | {"signature": "0" * 64})) == "invalid signature"
    assert refused(post(client, signed("bob", now + 60, slug="nobody"))) == "invalid signature"
    assert refused(post(client, signed("bob", now - 1))) == "signature expired"
    assert "ahead" in refused(post(client, signed("bob", now + 25 * 3600)))
    partial = signed("bob", now + 60)
    del partial["signature"]
    assert "needs integration, expires and signature" in refused(post(client, partial))
    assert post(client, signed("bob", now + 60)).status_code == 200


def test_rotation_retires_the_old_key_and_secret_at_once(client):
    caller = make_integration("shop")
    old_signed = caller.signed("alice") | {"text": "你好"}
    rotated = client.post("/api/admin/integrations/shop/rotate", headers=ADMIN)
    assert rotated.status_code == 200
    new_key = rotated.json()["api_key"]
    refused(post(client, {"user_id": "alice", "text": "你好"}, caller.headers))
    refused(post(client, old_signed))
    assert post(client, {"user_id": "alice", "text": "你好"}, {"Authorization": f"Bearer {new_key}"}).status_code == 200


def test_user_id_leaves_room_for_the_namespace(client):
    caller = make_integration("a" * 32)
    longest = {"user_id": "u" * service.USER_ID_MAX_CHARS, "text": "你好"}
    assert post(client, longest, caller.headers).status_code == 200
    assert post(client, longest | {"user_id": longest["user_id"] + "u"}, caller.headers).status_code == 422


def _bind_and_open_a_ticket(client, caller) -> int:
    """Integration A's user "alice" binds the merchant, gets an invoice status and asks for a person."""
    with session_scope() as db_session:
        merchant = merchants.create(db_session=db_session, name="甲公司", tax_ids=[SELLER])
        code, _ = merchants.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=600)
        invoice_service.upsert_many(
            db_session=db_session,
            records=[InvoiceRecord(number=NUMBER, status=InvoiceStatus.ISSUED, seller_tax_id=SELLER)],
        )
    bound = post(client, {"user_id": "alice", "text": f"绑定 {SELLER} {code}"}, caller.headers).json()
    assert "绑定成功" in bound["text"]
    found = post(client, {"user_id": "alice", "text": f"查发票 {NUMBER}"}, caller.headers).json()
    assert "已开具" in found["text"]
    post(client, {"user_id": "alice", "text": "转人工"}, caller.headers)
    with session_scope() as db_session:
        ticket = db_session.scalar(select(Ticket).where(Ticket.user_id == caller.identity("alice")))
        assert ticket is not None and ticket.channel == "api"
        return ticket.id


def _ticket_texts(ticket_id: int) -> list[str]:
    with session_scope() as db_session:
        query = select(TicketMessage.text).where(TicketMessage.ticket_id == ticket_id)
        return list(db_session.scalars(query))


def test_another_integration_never_reaches_the_first_ones_user(client):
    a, b = make_integration("shop-a"), make_integration("shop-b")
    ticket_id = _bind_and_open_a_ticket(client, a)
    transcript = _ticket_texts(ticket_id)

    # B with its own key, the same user id: a separate identity that sees nothing of A's.
    status = post(client, {"user_id": "alice", "text": "我的绑定"}, b.headers).json()
    assert "还没有绑定企业" in status["text"] and "甲公司" not in status["text"]
    lookup = post(client, {"user_id": "alice", "text": f"查发票 {NUMBER}"}, b.headers).json()
    assert "已开具" not in lookup["text"] and "绑定" in lookup["text"]
    unbind = post(client, {"user_id": "alice", "text": "解绑"}, b.headers).json()
    assert "没有绑定企业" in unbind["text"]
    post(client, {"user_id": "alice", "text": "这是B的消息，请勿写入A的工单"}, b.headers)
    # B's user ids that look like A's namespace stay under B's.
    for user_id in ("shop-a:alice", ":shop-a:alice", "../shop-a:alice"):
        spoof = post(client, {"user_id": user_id, "text": "我的绑定"}, b.headers).json()
        assert "甲公司" not in spoof["text"]
    # B's key with A's slug in the body, or A's slug signed with B's secret: not A.
    with_a_slug = b.signed("alice") | {"integration": "shop-a", "text": "我的绑定"}
    refused(post(client, with_a_slug))
    keyed = post(client, b.signed("alice") | {"integration": "shop-a", "text": "我的绑定"}, b.headers).json()
    assert "甲公司" not in keyed["text"]

    with session_scope() as db_session:
        bindings = {(row.channel, row.user_id) for row in db_session.scalars(select(ChatBinding))}
        tickets = {row.user_id for row in db_session.scalars(select(Ticket))}
        b_users = set(
            db_session.scalars(select(ConversationTurn.user_id).where(ConversationTurn.user_id.like("shop-b:%")))
        )
    assert bindings == {("api", "shop-a:alice")}, "A's binding is untouched, B bound nothing"
    assert tickets == {"shop-a:alice"}, "B opened no ticket and did not reach A's"
    assert b_users >= {"shop-b:alice", "shop-b:shop-a:alice"}
    assert _ticket_texts(ticket_id) == transcript, "nothing of B's reached A's ticket"
    # A's own user still reaches its ticket.
    assert post(client, {"user_id": "alice", "text": "A的补充说明"}, a.headers).json()["intent"] == "human"
    assert _ticket_texts(ticket_id)[-1] == "A的补充说明"


def test_an_integration_without_binding_cannot_bind(client):
    caller = make_integration("public", allow_binding=False)
    with session_scope() as db_session:
        merchant = merchants.create(db_session=db_session, name="甲公司", tax_ids=[SELLER])
        code, _ = merchants.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=600)
    reply = post(client, {"user_id": "alice", "text": f"绑定 {SELLER} {code}"}, caller.headers).json()
    assert "不能绑定商户" in reply["text"] and reply["intent"] == "binding"
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count(ChatBinding.id))) == 0
        assert merchants.get_by_tax_id(db_session=db_session, tax_id=SELLER) is not None


# --- demo mode ---


@pytest.fixture
def demo(app_env, monkeypatch):
    monkeypatch.setenv("CHAT_API_DEMO", "true")
    monkeypatch.setenv("MATCHER_EMBEDDINGS", "false")
    from tests.conftest import clear_process_caches

    clear_process_caches()
    app = create_app()
    with (
        TestClient(app, client=("127.0.0.1", 40000)) as local,
        TestClient(app, client=("203.0.113.9", 40000)) as remote,
    ):
        yield local, remote


def test_demo_mode_answers_local_calls_only_under_the_demo_namespace(demo):
    local, remote = demo
    assert post(local, {"user_id": "visitor", "text": "你好"}).status_code == 200
    refused(post(remote, {"user_id": "visitor", "text": "你好"}))
    forwarded = post(local, {"user_id": "visitor", "text": "你好"}, {"X-Forwarded-For": "203.0.113.9"})
    refused(forwarded)
    refused(post(local, {"user_id": "visitor", "text": "你好"}, {"Authorization": "Bearer mak_wrong"}))
    with session_scope() as db_session:
        assert set(db_session.scalars(select(ConversationTurn.user_id))) == {"demo:visitor"}


def test_demo_mode_refuses_binding_politely(demo):
    local, _ = demo
    with session_scope() as db_session:
        merchant = merchants.create(db_session=db_session, name="甲公司", tax_ids=[SELLER])
        code, _ = merchants.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=600)
    asked = post(local, {"user_id": "visitor", "text": "绑定"}).json()
    assert "演示模式" in asked["text"] and "不能绑定商户" in asked["text"]
    tried = post(local, {"user_id": "visitor", "text": f"绑定 {SELLER} {code}"}).json()
    assert "不能绑定商户" in tried["text"]
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count(ChatBinding.id))) == 0


def test_demo_mode_is_off_by_default(client):
    local = TestClient(client.app, client=("127.0.0.1", 40000))
    refused(post(local, {"user_id": "visitor", "text": "你好"}))


def test_openapi_documents_both_ways_to_authenticate(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/chat"]["post"]
    assert operation["security"] == [{"IntegrationKey": []}]
    assert spec["components"]["securitySchemes"]["IntegrationKey"]["scheme"] == "bearer"
    assert {"401", "403"} <= set(operation["responses"])
    fields = spec["components"]["schemas"]["ChatIn"]["properties"]
    assert {"integration", "expires", "signature"} <= set(fields)
    assert fields["user_id"]["maxLength"] == service.USER_ID_MAX_CHARS
