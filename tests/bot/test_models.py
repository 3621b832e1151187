"""The migrations and the models agree: a freshly migrated database has exactly the tables and columns the models of
every package describe."""

import ast
import re

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.models import metadata
from tests.conftest import REPO
from ticketing import search

PACKAGES = ("core", "knowledge", "merchants", "invoices", "integrations", "ticketing", "handlers", "console", "bot")


def test_every_model_table_is_migrated_and_nothing_else(engine):
    tables = inspect(engine).get_table_names()
    migrated = {t for t in tables if search.include_name(t, "table", {})} - {"alembic_version"}
    assert migrated == set(metadata.tables)
    assert {"merchant", "invoice", "ticket", "faq_entry", "outbox_message", "conversation_turn"} <= migrated


def test_a_fresh_migration_matches_the_models(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": search.include_name})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_bot_models_imports_every_module_that_declares_tables():
    declaring = {
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if re.search(r"^class \w+\((\w+, )*Base\b", path.read_text(encoding="utf-8"), flags=re.M)
    }
    tree = ast.parse((REPO / "bot" / "models.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {"merchants.models", "ticketing.models"} <= declaring
    assert declaring - imported == set()
