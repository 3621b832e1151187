"""HTTP API: chat, health, and the admin FAQ routes (each authenticated), on each database."""

import pytest
import yaml
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from bot.app import create_app
from tests.conftest import REPO

ADMIN = {"Authorization": "Bearer test-admin-token"}


def shipped_faq_count() -> int:
    """How many entries the shipped FAQ files hold, read without the code under test."""
    faq_dir = REPO / "knowledge" / "data" / "faq"
    return sum(len(yaml.safe_load(p.read_text(encoding="utf-8"))) for p in faq_dir.glob("*.yaml"))


@pytest.fixture
def client(app_env, api_caller):
    with TestClient(create_app(), headers=api_caller.headers) as test_client:
        yield test_client


def chat(client, text: str, user: str = "api-user"):
    response = client.post("/api/chat", json={"user_id": user, "text": text})
    assert response.status_code == 200, response.text
    return response.json()


def test_health(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_startup_builds_the_matcher_before_the_first_message(client):
    from knowledge.live import get_live_knowledge

    assert get_live_knowledge().built


def test_chat_returns_reply_and_understanding(client):
    body = chat(client, "发票号码25112000000098765432查一下")
    assert body["intent"] == "invoice_lookup"
    assert body["invoice"] == {"number": "25112000000098765432"}
    assert set(body) == {"text", "options", "intent", "topic", "confidence", "candidates", "invoice"}


def test_chat_options_carry_payloads(client):
    body = chat(client, "你好")
    assert body["intent"] == "greeting"
    assert {"label", "payload"} <= set(body["options"][0])


@pytest.mark.parametrize(
    "payload",
    [{"text": "你好"}, {"user_id": "", "text": "你好"}, {"user_id": "u", "text": "票" * 20001}, {"user_id": "u"}],
)
def test_chat_rejects_malformed_requests_with_a_reason(client, payload):
    response = client.post("/api/chat", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_chat_rejects_non_json(client):
    response = client.post("/api/chat", content=b"\xff\xfe not json", headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert response.json()["detail"]


def test_openapi_documents_the_chat_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/chat" in paths and "/api/admin/faq/{faq_id}" in paths


def all_routes(routes) -> list[APIRoute]:
    """Every API route, including those of included routers."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        nested = getattr(route, "original_router", None) or getattr(route, "app", None)
        if nested is not None and hasattr(nested, "routes"):
            found += all_routes(nested.routes)
    return found


def test_every_admin_route_requires_the_token(client):
    admin_routes = [r for r in all_routes(client.app.routes) if r.path.startswith("/api/admin")]
    assert len(admin_routes) >= 6
    for route in admin_routes:
        path = route.path.replace("{faq_id}", "busy_server").replace("{slug}", "tests")
        for method in route.methods:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-admin-token"}):
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)


def test_admin_api_is_closed_without_a_configured_token(client, monkeypatch):
    from core.settings import get_settings

    monkeypatch.delenv("ADMIN_TOKEN")
    get_settings.cache_clear()
    response = client.get("/api/admin/faq", headers=ADMIN)
    assert response.status_code == 401
    assert "ADMIN_TOKEN" in response.json()["detail"]


def test_admin_lists_and_reads_entries(client):
    entries = client.get("/api/admin/faq", headers=ADMIN).json()
    assert len(entries) == shipped_faq_count()
    one = client.get("/api/admin/faq/busy_server", headers=ADMIN).json()
    assert one["id"] == "busy_server" and one["version"] == 1
    assert client.get("/api/admin/faq/no_such_topic", headers=ADMIN).status_code == 404


def test_faq_edit_changes_the_live_answer_without_restart(client):
    entry = client.get("/api/admin/faq/busy_server", headers=ADMIN).json()
    entry["answer"] = "【新版答复】平台繁忙时请过十分钟再试，先查询确认是否已开出。"
    entry["alternates"] = [*entry["alternates"], "开票页面一直显示排队中请耐心等待"]
    saved = client.put("/api/admin/faq/busy_server", headers=ADMIN, json=entry)
    assert saved.status_code == 200 and saved.json()["version"] == 2
    body = chat(client, "开票页面一直显示排队中请耐心等待", user="after-edit")
    assert body["topic"] == "busy_server"
    assert body["text"].startswith("【新版答复】")


def test_new_faq_entry_is_matched_and_a_deleted_one_is_not(client):
    entry = {
        "id": "printer_setup",
        "category": "devices",
        "question": "发票打印机怎么调整打印位置？",
        "alternates": ["打印发票的时候字打歪了", "发票套打位置对不上"],
        "keywords": ["套打"],
        "answer": "在开票软件的打印设置里调整上下左右边距，先用白纸试打。",
    }
    assert client.put("/api/admin/faq/printer_setup", headers=ADMIN, json=entry).status_code == 200
    assert chat(client, "发票套打位置对不上怎么调", user="p1")["topic"] == "printer_setup"
    assert client.delete("/api/admin/faq/printer_setup", headers=ADMIN).status_code == 204
    assert chat(client, "发票套打位置对不上怎么调", user="p2")["topic"] != "printer_setup"
    assert client.delete("/api/admin/faq/printer_setup", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    "change",
    [{"id": "Bad Id"}, {"answer": ""}, {"question": None}, {"id": "other_id"}],
)
def test_invalid_faq_edits_are_rejected(client, change):
    entry = client.get("/api/admin/faq/busy_server", headers=ADMIN).json()
    response = client.put("/api/admin/faq/busy_server", headers=ADMIN, json={**entry, **change})
    assert response.status_code == 422


def test_yaml_export_and_import(client):
    exported = client.get("/api/admin/faq/export", headers=ADMIN)
    assert exported.status_code == 200
    rows = yaml.safe_load(exported.text)
    assert len(rows) == shipped_faq_count()
    rows[0]["answer"] += "（已更新）"
    response = client.post(
        "/api/admin/faq/import",
        headers={**ADMIN, "content-type": "application/yaml"},
        content=yaml.safe_dump(rows, allow_unicode=True).encode(),
    )
    assert response.json() == {"created": 0, "updated": 1, "unchanged": shipped_faq_count() - 1}
    bad = client.post("/api/admin/faq/import", headers={**ADMIN, "content-type": "application/yaml"}, content=b"a: [")
    assert bad.status_code == 422 and "invalid FAQ file" in bad.json()["detail"]


def test_yaml_import_refuses_anchors_and_aliases_at_once(client):
    """The 487-byte alias bomb (10^9 leaves once built) and any other alias: 422 with the reason, nothing imported."""
    import time

    from tests.core.test_safe_yaml import alias_bomb

    headers = {**ADMIN, "content-type": "application/yaml"}
    entry = "- &e\n  id: alias_entry\n  category: 测试\n  question: 别名能导入吗？\n  answer: 不能。\n- *e\n"
    for text in (alias_bomb(9), entry):
        started = time.monotonic()
        response = client.post("/api/admin/faq/import", headers=headers, content=text.encode())
        assert response.status_code == 422 and "锚点和别名" in response.json()["detail"], response.text
        assert time.monotonic() - started < 1.0
    assert client.get("/api/admin/faq/alias_entry", headers=ADMIN).status_code == 404


def test_try_a_question_shows_ranked_candidates(client):
    body = client.post("/api/admin/faq/try", headers=ADMIN, json={"text": "提示服务器繁忙请稍后再试"}).json()
    assert body["candidates"][0]["topic"] == "busy_server"
    assert 0.0 <= body["confidence"] <= 1.0
