"""The first run: `serve` says where the staff console is and, until an admin exists, how to create one."""

from argon2 import PasswordHasher

from bot.cli import FIRST_ADMIN_COMMAND, console_hint
from core.database import get_engine, session_scope, upgrade_schema
from ticketing import staff


def test_serve_says_how_to_create_the_first_admin_until_one_exists(app_env, monkeypatch):
    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    upgrade_schema(get_engine())
    empty = console_hint("0.0.0.0", 8000)
    assert FIRST_ADMIN_COMMAND in empty and "http://127.0.0.1:8000/console" in empty
    with session_scope() as db_session:
        staff.create(db_session=db_session, username="li", password="an agent pw", role="agent")
    assert FIRST_ADMIN_COMMAND in console_hint("0.0.0.0", 8000), "an agent cannot open the admin pages"
    with session_scope() as db_session:
        staff.create(db_session=db_session, username="admin", password="the admin pw", role="admin")
    ready = console_hint("127.0.0.1", 8000)
    assert "user create" not in ready and ready.endswith("http://127.0.0.1:8000/console")


def test_the_first_admin_command_is_one_the_cli_accepts(app_env, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import app as cli

    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    args = [*FIRST_ADMIN_COMMAND.split()[1:], "--password-stdin"]
    done = CliRunner().invoke(cli, args, input="a long password\n")
    assert done.exit_code == 0, done.output
    with session_scope() as db_session:
        assert staff.has_active_admin(db_session=db_session)
