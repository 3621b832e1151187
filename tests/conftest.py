"""Shared fixtures: each storage test runs on SQLite and PostgreSQL, each store test in-process and on Redis.

PostgreSQL and Redis are taken from TEST_POSTGRES_URL / TEST_REDIS_URL, else from DATABASE_URL / REDIS_URL when
they point at those servers, else the local defaults. When a server is unreachable its tests are skipped —
unless REQUIRE_SERVICES=1, when they fail.
"""

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from core.database import get_engine, get_sessionmaker, make_engine, upgrade_schema
from core.settings import get_settings
from core.store import MemoryStore, RedisStore, Store, get_store
from invoices.factory import get_invoice_backend
from knowledge.live import get_live_knowledge

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


SYSTEM_TESTS = Path(__file__).resolve().parent / "system"
EMBEDDED = {"database_url": "sqlite", "store": "memory"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--embedded",
        action="store_true",
        help="run storage tests on the embedded defaults only (SQLite, in-process store): no PostgreSQL or Redis",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests/system/ as `system`; with --embedded, leave out the PostgreSQL and Redis variants."""
    kept, dropped = [], []
    for item in items:
        if SYSTEM_TESTS in item.path.parents:
            item.add_marker(pytest.mark.system)
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_a_server = any(params.get(name, embedded) != embedded for name, embedded in EMBEDDED.items())
        (dropped if config.getoption("--embedded") and on_a_server else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _env_url(test_var: str, var: str, scheme: str, default: str) -> str:
    if os.environ.get(test_var):
        return os.environ[test_var]
    if os.environ.get(var, "").startswith(scheme):
        return os.environ[var]
    return default


POSTGRES_URL = _env_url(
    "TEST_POSTGRES_URL", "DATABASE_URL", "postgresql", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = _env_url("TEST_REDIS_URL", "REDIS_URL", "redis", "redis://127.0.0.1:6379/0")


def service_unavailable(name: str, exc: Exception) -> None:
    """Skip, or fail when the run requires every service."""
    message = f"{name} unavailable: {exc}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (REQUIRE_SERVICES=1)")
    pytest.skip(message)


def postgres_schema_url(schema: str) -> str:
    """The PostgreSQL URL with a private search_path, so tests never touch anything else in the database."""
    url = make_url(POSTGRES_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        admin = make_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        service_unavailable("PostgreSQL", exc)
    try:
        yield postgres_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database_url) -> Iterator[Engine]:
    """A migrated database engine."""
    eng = make_engine(database_url)
    upgrade_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["memory", "redis"])
def store(request) -> Iterator[Store]:
    """A store of each kind, empty."""
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = f"test:{uuid.uuid4().hex}:"
    try:
        redis_store = RedisStore(REDIS_URL, prefix=prefix)
        redis_store.ping()
    except Exception as exc:
        service_unavailable("Redis", exc)
    yield redis_store
    client = redis_store._redis
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


def clear_process_caches() -> None:
    """Forget cached settings, engines, stores, knowledge and invoice backends so a test's environment takes effect."""
    for cached in (
        get_settings,
        get_engine,
        get_sessionmaker,
        get_store,
        get_live_knowledge,
        get_invoice_backend,
    ):
        cached.cache_clear()


@pytest.fixture
def app_env(database_url, monkeypatch, tmp_path) -> Iterator[str]:
    """Point the application at a fresh database (each kind) and a fresh in-process store."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("ADMIN_TOKEN", "test-admin-token")
    clear_process_caches()
    yield database_url
    clear_process_caches()


# --- callers of the chat API ---


@dataclass(frozen=True)
class ApiCaller:
    """An integration allowed to call POST /api/chat: its key and secret, and the identities it addresses."""

    slug: str
    api_key: str
    signing_secret: str

    @property
    def headers(self) -> dict[str, str]:
        """The headers that authenticate a chat call with the API key."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def identity(self, user_id: str) -> str:
        """The user id the router and the database see for this integration's `user_id`."""
        return f"{self.slug}:{user_id}"

    def signed(self, user_id: str, ttl_seconds: int = 3600) -> dict[str, str | int]:
        """The body fields of a signed identity for `user_id` (add "text"), valid for `ttl_seconds`."""
        from integrations.service import sign

        expires = int(time.time()) + ttl_seconds
        signature = sign(signing_secret=self.signing_secret, user_id=user_id, expires=expires)
        return {"user_id": user_id, "integration": self.slug, "expires": expires, "signature": signature}


def make_integration(slug: str = "tests", *, name: str = "测试接入", allow_binding: bool = True) -> ApiCaller:
    """Create an integration in the configured database (migrated first) and return it as a caller."""
    from core.database import session_scope
    from integrations import service

    upgrade_schema(get_engine())
    with session_scope() as db_session:
        credentials = service.create(db_session=db_session, slug=slug, name=name, allow_binding=allow_binding)
    return ApiCaller(slug, credentials.api_key, credentials.signing_secret)


@pytest.fixture
def api_caller(app_env) -> ApiCaller:
    """An integration of the test's database: `api_caller.headers` authenticates POST /api/chat, and its users are
    stored as `api_caller.identity(user_id)`."""
    return make_integration()
