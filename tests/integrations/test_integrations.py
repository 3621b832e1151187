"""Integrations: keys shown once and stored hashed, reserved slugs, the admin API (ADMIN_TOKEN only), the CLI, and
the migration that moves earlier API identities to the legacy namespace, on each database."""

import hashlib

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from bot.app import create_app
from bot.cli import app as cli
from core.database import alembic_config, session_scope, upgrade_schema
from integrations import service
from integrations.models import Integration

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(app_env, monkeypatch):
    monkeypatch.setenv("MATCHER_EMBEDDINGS", "false")
    with TestClient(create_app()) as test_client:
        yield test_client


def test_key_and_secret_are_shown_once_and_only_the_key_hash_is_stored(client):
    created = client.post("/api/admin/integrations", json={"slug": "shop", "name": "商城"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["api_key"].startswith("mak_") and body["signing_secret"].startswith("mas_")
    assert body["key_prefix"] == body["api_key"][: service.DISPLAY_PREFIX_CHARS]
    listed = client.get("/api/admin/integrations", headers=ADMIN).json()
    assert [row["slug"] for row in listed] == ["shop"]
    assert "api_key" not in listed[0] and "signing_secret" not in listed[0]
    assert body["api_key"] not in str(listed) and body["signing_secret"] not in str(listed)
    with session_scope() as db_session:
        row = db_session.scalar(select(Integration))
        stored = [str(value) for value in vars(row).values()]
    assert row.key_hash == hashlib.sha256(body["api_key"].encode()).hexdigest()
    assert not any(body["api_key"] in value for value in stored), "the key itself is never stored"


@pytest.mark.parametrize("slug", ["legacy", "demo", "a", "Shop", "shop_1", "shop:a", "x" * 33])
def test_reserved_and_malformed_slugs_are_refused(client, slug):
    response = client.post("/api/admin/integrations", json={"slug": slug, "name": "x"}, headers=ADMIN)
    assert response.status_code == 422
    with session_scope() as db_session, pytest.raises(service.IntegrationError):
        service.create(db_session=db_session, slug=slug, name="x")


def test_a_slug_is_taken_once(client):
    assert client.post("/api/admin/integrations", json={"slug": "shop", "name": "x"}, headers=ADMIN).status_code == 201
    again = client.post("/api/admin/integrations", json={"slug": "shop", "name": "y"}, headers=ADMIN)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/admin/integrations"),
        ("POST", "/api/admin/integrations"),
        ("POST", "/api/admin/integrations/shop/disable"),
        ("POST", "/api/admin/integrations/shop/enable"),
        ("POST", "/api/admin/integrations/shop/rotate"),
    ],
)
def test_admin_routes_need_the_admin_token(client, method, path):
    caller_key = service.KEY_PREFIX + "x" * 43
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {caller_key}"}):
        response = client.request(method, path, json={"slug": "shop", "name": "x"}, headers=headers)
        assert response.status_code == 401, (method, path, headers)


def test_unknown_integrations_are_404(client):
    for action in ("disable", "enable", "rotate"):
        assert client.post(f"/api/admin/integrations/nobody/{action}", headers=ADMIN).status_code == 404


def test_a_key_authenticates_only_its_integration_in_constant_form(app_env):
    upgrade_schema()
    with session_scope() as db_session:
        first = service.create(db_session=db_session, slug="one", name="一")
        second = service.create(db_session=db_session, slug="two", name="二")
        assert service.authenticate_key(db_session=db_session, api_key=first.api_key).slug == "one"
        assert service.authenticate_key(db_session=db_session, api_key=second.api_key).slug == "two"
        for wrong in (first.api_key[:-1], first.signing_secret, "", "mak_", first.api_key + "x"):
            with pytest.raises(service.AuthenticationFailed):
                service.authenticate_key(db_session=db_session, api_key=wrong)
        service.disable(db_session=db_session, slug="one")
        with pytest.raises(service.IntegrationDisabled):
            service.authenticate_key(db_session=db_session, api_key=first.api_key)


# --- the command line ---


def test_cli_adds_lists_rotates_and_disables(app_env):
    runner = CliRunner()
    added = runner.invoke(cli, ["integration", "add", "kiosk", "--name", "自助机", "--no-binding"])
    assert added.exit_code == 0, added.output
    key = next(line.split()[-1] for line in added.stdout.splitlines() if line.startswith("api key:"))
    assert key.startswith("mak_")
    with session_scope() as db_session:
        integration = service.authenticate_key(db_session=db_session, api_key=key)
        assert (integration.slug, integration.allow_binding) == ("kiosk", False)

    listed = runner.invoke(cli, ["integration", "list"])
    assert listed.exit_code == 0 and "kiosk" in listed.stdout and "no-binding" in listed.stdout
    assert key not in listed.stdout and key[: service.DISPLAY_PREFIX_CHARS] in listed.stdout

    rotated = runner.invoke(cli, ["integration", "rotate", "kiosk"])
    assert rotated.exit_code == 0 and "mak_" in rotated.stdout and key not in rotated.stdout
    with session_scope() as db_session, pytest.raises(service.AuthenticationFailed):
        service.authenticate_key(db_session=db_session, api_key=key)

    assert runner.invoke(cli, ["integration", "disable", "kiosk"]).exit_code == 0
    assert "disabled" in runner.invoke(cli, ["integration", "list"]).stdout
    taken = runner.invoke(cli, ["integration", "add", "kiosk", "--name", "again"])
    assert taken.exit_code == 2 and "already exists" in taken.output
    reserved = runner.invoke(cli, ["integration", "add", "legacy", "--name", "x"])
    assert reserved.exit_code == 2 and "reserved" in reserved.output
    assert runner.invoke(cli, ["integration", "disable", "nobody"]).exit_code == 2


def test_serve_hint_shows_a_call_that_works(app_env):
    from bot.cli import chat_hint

    demo = "\n".join(chat_hint("127.0.0.1", 8000, demo=True))
    assert "curl -s http://127.0.0.1:8000/api/chat" in demo and "authorization" not in demo
    keyed = "\n".join(chat_hint("0.0.0.0", 8000, demo=False))
    assert "integration add" in keyed and "authorization: Bearer $KEY" in keyed and "127.0.0.1:8000" in keyed


# --- the migration ---


def test_migration_moves_earlier_api_identities_to_the_legacy_namespace(database_url):
    from core.database import make_engine

    engine = make_engine(database_url)
    try:
        config = alembic_config(database_url)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
        long_id = "L" * 128
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO merchant (name) VALUES ('甲公司')"))
            merchant_id = connection.execute(text("SELECT id FROM merchant")).scalar()
            for channel, user_id in (("api", "shop:alice"), ("api", long_id), ("api", "x" * 121), ("wechat", "o1")):
                connection.execute(
                    text(
                        "INSERT INTO conversation_turn (channel, user_id, text, intent, reply) "
                        "VALUES (:channel, :user_id, 'x', 'answer', 'y')"
                    ),
                    {"channel": channel, "user_id": user_id},
                )
            binding = "INSERT INTO chat_binding (channel, user_id, merchant_id) VALUES (:channel, :user_id, :merchant)"
            connection.execute(text(binding), {"channel": "api", "user_id": "shop:alice", "merchant": merchant_id})
            connection.execute(text(binding), {"channel": "wechat", "user_id": "o1", "merchant": merchant_id})
            connection.execute(
                text(
                    "INSERT INTO ticket (channel, user_id, state, priority, category, subject, context, "
                    "reopened_count, sla_started_at, paused_seconds) VALUES ('api', 'shop:alice', 'new', 'normal', "
                    "'general', '', '{}', 0, CURRENT_TIMESTAMP, 0)"
                )
            )
        assert upgrade_schema(engine)
        with engine.connect() as connection:
            turns = set(connection.execute(text("SELECT channel, user_id FROM conversation_turn")))
            bindings = set(connection.execute(text("SELECT channel, user_id FROM chat_binding")))
            tickets = set(connection.execute(text("SELECT channel, user_id FROM ticket")))
        hashed = "legacy:" + hashlib.sha256(long_id.encode()).hexdigest()
        assert turns == {
            ("api", "legacy:shop:alice"),
            ("api", hashed),
            ("api", "legacy:" + "x" * 121),
            ("wechat", "o1"),
        }
        assert bindings == {("api", "legacy:shop:alice"), ("wechat", "o1")}
        assert tickets == {("api", "legacy:shop:alice")}
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
        with engine.connect() as connection:
            bindings = set(connection.execute(text("SELECT channel, user_id FROM chat_binding")))
        assert bindings == {("api", "shop:alice"), ("wechat", "o1")}
    finally:
        engine.dispose()
