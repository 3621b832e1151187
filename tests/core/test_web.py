"""The per-request database session: a route's writes are committed before its response starts, and a commit that
fails is a 503, never a 200."""

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.app import create_app
from core.conversation.models import ConversationTurn
from core.database import session_scope
from core.web import DbSession


def stored_turns(user_id: str) -> int:
    with session_scope() as db_session:
        return db_session.scalar(select(func.count()).where(ConversationTurn.user_id == user_id))


def app_with_probe():
    """The application plus POST /probe/{user_id}, which stores one turn through the request's DbSession."""
    app = create_app()

    @app.post("/probe/{user_id}")
    def probe(user_id: str, db_session: DbSession) -> dict:
        db_session.add(ConversationTurn(channel="api", user_id=user_id, text="你好", intent="greeting", reply="您好"))
        return {"ok": True}

    return app


def test_a_routes_writes_are_committed_before_its_response_starts(app_env):
    app = app_with_probe()
    seen_at_start: list[int] = []

    async def watching(scope, receive, send):
        async def watched_send(message):
            if message["type"] == "http.response.start" and scope["path"].startswith("/probe/"):
                seen_at_start.append(stored_turns("durable-1"))  # another connection: only committed rows count
            await send(message)

        await app(scope, receive, watched_send)

    with TestClient(watching) as client:
        assert client.post("/probe/durable-1").status_code == 200
    assert seen_at_start == [1], "the response started before the request's commit"


def test_a_commit_that_fails_is_a_503_not_a_200(app_env, monkeypatch):
    app = app_with_probe()
    with TestClient(app) as client:

        def locked(self):
            raise OperationalError("COMMIT", {}, Exception("database is locked"))

        monkeypatch.setattr(Session, "commit", locked)
        response = client.post("/probe/lost-1")
        monkeypatch.undo()
    assert response.status_code == 503, response.text
    assert stored_turns("lost-1") == 0


def test_any_other_failed_commit_is_a_server_error(app_env, monkeypatch):
    app = app_with_probe()
    with TestClient(app, raise_server_exceptions=False) as client:

        def broken(self):
            raise RuntimeError("disk full")

        monkeypatch.setattr(Session, "commit", broken)
        response = client.post("/probe/lost-2")
        monkeypatch.undo()
    assert response.status_code == 500
    assert stored_turns("lost-2") == 0
