"""Full-text search over merchants' ticket messages: an FTS5 trigram index kept in step by triggers on SQLite, a
pg_trgm GIN index on PostgreSQL (when the extension can be had; ILIKE works without it, only slower).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:00:00
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FTS = "ticket_message_fts"
TRGM_INDEX = "ix_ticket_message_text_trgm"
SQLITE_TRIGRAM = sqlite3.sqlite_version_info >= (3, 34, 0)  # the trigram tokenizer (ticketing/search.py agrees)

SQLITE_UP = [
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(text, tokenize='trigram')",
    f"INSERT INTO {FTS}(rowid, text) SELECT id, text FROM ticket_message WHERE author_kind = 'merchant'",
    f"""CREATE TRIGGER {FTS}_insert AFTER INSERT ON ticket_message WHEN new.author_kind = 'merchant' BEGIN
        INSERT INTO {FTS}(rowid, text) VALUES (new.id, new.text);
    END""",
    f"""CREATE TRIGGER {FTS}_delete AFTER DELETE ON ticket_message BEGIN
        DELETE FROM {FTS} WHERE rowid = old.id;
    END""",
    f"""CREATE TRIGGER {FTS}_update AFTER UPDATE OF text, author_kind ON ticket_message BEGIN
        DELETE FROM {FTS} WHERE rowid = old.id;
        INSERT INTO {FTS}(rowid, text) SELECT new.id, new.text WHERE new.author_kind = 'merchant';
    END""",
]


def _trgm_schema(bind: sa.Connection) -> str | None:
    """The schema pg_trgm is installed in, installing it into public when it is missing and allowed."""
    query = sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    )
    schema = bind.scalar(query)
    if schema is None:
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public"))
        except sa.exc.DBAPIError:
            pass  # not installed and not allowed: searches use ILIKE without an index
        schema = bind.scalar(query)
    return schema


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and SQLITE_TRIGRAM:
        for statement in SQLITE_UP:
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        schema = _trgm_schema(bind)
        if schema is not None:
            op.execute(
                f'CREATE INDEX {TRGM_INDEX} ON ticket_message USING gin (text "{schema}".gin_trgm_ops) '
                "WHERE author_kind = 'merchant'"
            )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {FTS}_{trigger}")
        op.execute(f"DROP TABLE IF EXISTS {FTS}")
    elif bind.dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {TRGM_INDEX}")
