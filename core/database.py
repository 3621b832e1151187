"""Database engine, session factory and schema migration on start."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from core.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class Base(DeclarativeBase):
    """Declarative base for every model of the project."""


def make_engine(url: str) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL; errors never echo bound values (merchant text) into logs."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A database that does not answer fails the request within seconds instead of hanging past WeChat's budget.
    return create_engine(
        url, pool_pre_ping=True, pool_timeout=10, hide_parameters=True, connect_args={"connect_timeout": 5}
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL never corrupts the database; a power cut may lose the last commits, a crash does not.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def dialect_insert(db_session: Session):
    """The INSERT construct of the session's database, with ON CONFLICT support (PostgreSQL or SQLite)."""
    return _INSERTS[db_session.get_bind().dialect.name]


@lru_cache
def get_engine() -> Engine:
    """Return the process-wide engine for the configured DATABASE_URL."""
    return make_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    """Return the process-wide session factory."""
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


# SQLite has one writer: a thread that finds the database locked sleeps in SQLite's busy handler (1, 2, 5, 10 ms …).
# Committing under one process-wide lock makes the threads of a process queue instead.
_sqlite_commit_lock = threading.Lock()


@contextmanager
def session_scope() -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on error."""
    db_session = get_sessionmaker()()
    try:
        yield db_session
        if db_session.get_bind().dialect.name == "sqlite":
            # Flush outside the lock: a flush may wait for another connection's write lock, and that connection
            # may be about to take this lock to commit (holding the lock while waiting would deadlock both).
            db_session.flush()
            with _sqlite_commit_lock:
                db_session.commit()
        else:
            db_session.commit()
    except BaseException:
        db_session.rollback()
        raise
    finally:
        db_session.close()


def alembic_config(url: str) -> Config:
    """Build an Alembic config pointing at the shipped migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_schema(engine: Engine | None = None) -> bool:
    """Migrate the database to the newest revision; return True when anything ran."""
    engine = engine or get_engine()
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return False
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return True
