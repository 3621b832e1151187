"""`merchant-assist user …`: staff accounts for the console (register with `app.add_typer(user_app, name="user")`)."""

import sys
from typing import Annotated

import typer

user_app = typer.Typer(help="Staff accounts (agents and admins) for the console.", no_args_is_help=True)


@user_app.callback()
def user_main() -> None:
    """Staff accounts (agents and admins) for the console."""


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="agent or admin.")] = "agent",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    display_name: Annotated[
        str | None, typer.Option(help="Name shown to colleagues; the login name if omitted.")
    ] = None,
    capacity: Annotated[
        int | None, typer.Option(help="Tickets held at once; TICKET_DEFAULT_CAPACITY if omitted.")
    ] = None,
) -> None:
    """Create a staff account; the password is read from stdin or asked for (never taken as an argument)."""
    from bot.bootstrap import prepare_database
    from bot.database import session_scope
    from ticketing import staff

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    prepare_database()
    try:
        with session_scope() as db_session:
            user = staff.create(
                db_session=db_session,
                username=name,
                password=password,
                role=role,
                display_name=display_name,
                capacity=capacity,
            )
            user_id, username, user_role = user.id, user.username, user.role
    except staff.StaffError as exc:
        typer.echo(f"cannot create user: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"user {username} ({user_role}) created with id {user_id}")
