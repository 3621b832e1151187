"""The `merchant-assist` command line."""

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from bot import terminal
from bot.bootstrap import close_senders, make_senders, make_workers, prepare_database
from bot.channels.telegram.inbound import run_polling, set_webhook
from bot.triage import line_text, make_triage_router, triage_one
from console.routes import HOME as CONSOLE_HOME
from core import logs
from core.database import get_engine, session_scope, upgrade_schema
from core.messages import IncomingMessage
from core.settings import get_settings
from handlers.router import make_router
from integrations import service as integration_service
from invoices import service as invoice_service
from knowledge import service as knowledge_service
from merchants import service as merchant_service
from ticketing import staff

FIRST_ADMIN_COMMAND = ".venv/bin/merchant-assist user create admin --role admin"
# On stop, requests in flight get this long to finish; live pages' event streams never finish by themselves (their
# browsers reconnect to the next server).
SHUTDOWN_GRACE_SECONDS = 10

app = typer.Typer(help="merchant-assist: 发票商户智能客服", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
faq_app = typer.Typer(help="FAQ import and export (YAML).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(faq_app, name="faq")
invoices_app = typer.Typer(help="Invoices for the SQL backend.", no_args_is_help=True)
app.add_typer(invoices_app, name="invoices")
user_app = typer.Typer(help="Staff accounts (agents and admins) for the console.", no_args_is_help=True)
app.add_typer(user_app, name="user")
merchant_app = typer.Typer(help="Merchant accounts and binding codes.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
integration_app = typer.Typer(help="Integrations: the systems allowed to call POST /api/chat.", no_args_is_help=True)
app.add_typer(integration_app, name="integration")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False) -> None:
    """Configure logging for every command."""
    settings = get_settings()
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    logs.configure(level=level, fmt=settings.log_format)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (needs REDIS_URL and PostgreSQL).")] = 1,
) -> None:
    """Run the HTTP server (JSON chat API, admin API, OpenAPI docs at /docs)."""
    settings = get_settings()
    if workers > 1 and not settings.redis_url:
        typer.echo("--workers > 1 needs REDIS_URL: chat state, de-duplication and rate limits must be shared", err=True)
        raise typer.Exit(2)
    if workers > 1 and settings.database_url.startswith("sqlite"):
        typer.echo("warning: several workers on SQLite serialise every write; use PostgreSQL in production", err=True)
    prepare_database()
    typer.echo(f"merchant-assist on http://{host}:{port}  (API docs: http://{host}:{port}/docs)", err=True)
    for line in chat_hint(host, port, demo=settings.chat_api_demo):
        typer.echo(line, err=True)
    typer.echo("or in a terminal: .venv/bin/merchant-assist chat", err=True)
    typer.echo(f"merchants' web chat: {_local_url(host, port, '/chat')}", err=True)
    typer.echo(console_hint(host, port), err=True)
    uvicorn.run(
        "bot.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=logs.dict_config(level=logging.getLogger().level, fmt=settings.log_format),  # for each worker
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


def _local_url(host: str, port: int, path: str) -> str:
    """The URL of `path` on this server as seen from this machine."""
    local = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{local}:{port}{path}"


def console_hint(host: str, port: int) -> str:
    """Where the staff console is, and while no admin account exists, the command that creates the first one."""
    url = _local_url(host, port, CONSOLE_HOME)
    with session_scope() as db_session:
        has_admin = staff.has_active_admin(db_session=db_session)
    if has_admin:
        return f"staff console: {url}"
    return (
        f"no admin account yet: create the first one with `{FIRST_ADMIN_COMMAND}` (asks for a password), "
        f"then log in to the staff console at {url}"
    )


def chat_hint(host: str, port: int, *, demo: bool) -> list[str]:
    """How to call POST /api/chat on this server: anonymously in demo mode (from this machine), else with a key."""
    url = _local_url(host, port, "/api/chat")
    body = '-d \'{"user_id":"demo","text":"开票提示服务器繁忙怎么办"}\''
    if demo:
        return [
            "CHAT_API_DEMO is on: /api/chat answers calls without a key from this machine only (never behind a proxy)",
            f"chat: curl -s {url} -H 'content-type: application/json' {body}",
        ]
    return [
        "chat: /api/chat needs an integration key; create one (printed once) with",
        "  .venv/bin/merchant-assist integration add local --name 本机测试",
        f"then: curl -s {url} -H 'content-type: application/json' -H \"authorization: Bearer $KEY\" {body}",
    ]


@app.command()
def chat(user: Annotated[str, typer.Option(help="Merchant id for this conversation.")] = "terminal") -> None:
    """Talk to the bot in the terminal (the same router as every channel); agents' replies appear as they arrive."""
    prepare_database()
    router = make_router()
    typer.echo("发票助手已就绪。输入问题后回车；输入 /quit 退出。客服的回复会随时显示在这里。")
    output = threading.Lock()
    inbox = terminal.TerminalInbox(user, lock=output).start()
    try:
        while True:
            try:
                line = input(terminal.PROMPT)
            except (EOFError, KeyboardInterrupt):
                typer.echo("")
                break
            if line.strip() in {"/quit", "/exit"}:
                break
            with session_scope() as db_session:
                message = IncomingMessage(channel=terminal.CHANNEL, user_id=user, text=line)
                reply = router.handle(message, db_session=db_session)
            if not reply.silent:
                with output:
                    typer.echo("助手> " + reply.render_text().replace("\n", "\n      ") + "\n")
    finally:
        inbox.stop()


@app.command()
def triage() -> None:
    """Classify messages in bulk: one message per line on stdin, one JSON object per line on stdout.

    Each line is the first message of a fresh conversation. A line that is a JSON object with a "text"
    field is read as that text. Nothing is recorded.
    """
    prepare_database()
    router = make_triage_router()
    for number, raw in enumerate(sys.stdin.buffer, 1):
        row = triage_one(router, line_text(raw.decode("utf-8", errors="replace").rstrip("\r\n")), number)
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()


@app.command()
def worker() -> None:
    """Deliver queued outbound messages (WeChat 客服 API, Telegram) and re-check invoice watches until interrupted;
    `serve` runs the same workers."""
    prepare_database()
    senders = make_senders()
    if not senders:
        typer.echo(
            "no channel is configured (WECHAT_APP_ID/WECHAT_APP_SECRET or TELEGRAM_BOT_TOKEN): "
            "only invoice watches run; their messages wait in the outbox",
            err=True,
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    workers = make_workers(senders)
    for background in workers:
        background.start()
    typer.echo(f"running {', '.join(w.name for w in workers)}; Ctrl-C to stop", err=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for background in workers:
            background.stop()
        close_senders(senders)


@app.command("telegram-poll")
def telegram_poll() -> None:
    """Run the Telegram bot by long polling (local use: no public URL needed; removes any webhook)."""
    prepare_database()
    senders = make_senders()
    if "telegram" not in senders:
        typer.echo("TELEGRAM_BOT_TOKEN is not set", err=True)
        raise typer.Exit(2)
    try:
        run_polling(router=make_router(), senders=senders)
    finally:
        close_senders(senders)


@app.command("telegram-set-webhook")
def telegram_set_webhook(url: Annotated[str, typer.Argument(help="Public HTTPS URL of POST /telegram.")]) -> None:
    """Point Telegram at this deployment's webhook, with the secret token (once per deployment)."""
    try:
        set_webhook(url)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"webhook set to {url}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    changed = upgrade_schema(get_engine())
    typer.echo("schema upgraded" if changed else "schema already up to date")


@faq_app.command("import")
def faq_import(path: Annotated[Path, typer.Argument(help="YAML file with a list of FAQ entries.")]) -> None:
    """Create or update FAQ entries from a YAML file."""
    try:
        entries = knowledge_service.parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        typer.echo(f"cannot import {path}: {exc}", err=True)
        raise typer.Exit(2) from exc
    prepare_database()
    with session_scope() as db_session:
        counts = knowledge_service.import_entries(db_session=db_session, entries=entries)
    typer.echo(", ".join(f"{k} {v}" for k, v in counts.items()))


@faq_app.command("export")
def faq_export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; stdout if omitted.")] = None,
) -> None:
    """Write every FAQ entry as YAML."""
    prepare_database()
    with session_scope() as db_session:
        text = knowledge_service.to_yaml(knowledge_service.get_all(db_session=db_session))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@invoices_app.command("import")
def invoices_import(path: Annotated[Path, typer.Argument(help="CSV with a header row: number,status,...")]) -> None:
    """Insert or update invoices from a CSV file (columns as in POST /api/invoices); bad rows are listed."""
    prepare_database()
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream, session_scope() as db_session:
            report = invoice_service.import_csv(db_session=db_session, stream=stream)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        typer.echo(f"cannot import {path}: {exc}", err=True)
        raise typer.Exit(2) from exc
    for line, reason in report.errors:
        typer.echo(f"line {line}: {reason}", err=True)
    typer.echo(f"{report.rows} rows, {report.written} written, {len(report.errors)} rejected")
    if report.errors:
        raise typer.Exit(1)


@merchant_app.command("create")
def merchant_create(
    name: Annotated[str, typer.Argument(help="Merchant name.")],
    tax_ids: Annotated[list[str], typer.Option("--tax-id", help="Taxpayer id; repeat for several.")],
    contact: Annotated[str | None, typer.Option(help="Contact person or phone.")] = None,
) -> None:
    """Create a merchant and print its id."""
    prepare_database()
    try:
        with session_scope() as db_session:
            merchant_id = merchant_service.create(db_session=db_session, name=name, tax_ids=tax_ids, contact=contact).id
    except merchant_service.MerchantError as exc:
        typer.echo(f"cannot create merchant: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"merchant {merchant_id} created")


@merchant_app.command("code")
def merchant_code(merchant_id: Annotated[int, typer.Argument(help="Merchant id.")]) -> None:
    """Issue a single-use binding code for a merchant and print it (shown only this once)."""
    prepare_database()
    try:
        with session_scope() as db_session:
            code, row = merchant_service.issue_code(
                db_session=db_session, merchant_id=merchant_id, ttl_seconds=get_settings().binding_code_ttl_seconds
            )
            expires = row.expires_at
    except merchant_service.MerchantError as exc:
        typer.echo(f"cannot issue a code: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{code} (valid until {expires:%Y-%m-%d %H:%M} UTC, single use)")


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


# --- integrations ---


def _echo_credentials(credentials: integration_service.Credentials) -> None:
    integration = credentials.integration
    typer.echo(f"integration {integration.slug} ({integration.name})")
    typer.echo(f"api key:        {credentials.api_key}")
    typer.echo(f"signing secret: {credentials.signing_secret}")
    typer.echo("store both now: they are not shown again (only the key's hash is kept)", err=True)


@integration_app.command("add")
def integration_add(
    slug: Annotated[str, typer.Argument(help="Short name, 2-32 of a-z 0-9 -; its users become <slug>:<user_id>.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    no_binding: Annotated[
        bool, typer.Option("--no-binding", help="Its users may not bind merchants (nor see invoice status).")
    ] = False,
) -> None:
    """Create an integration and print its API key and signing secret (shown only this once)."""
    prepare_database()
    try:
        with session_scope() as db_session:
            credentials = integration_service.create(
                db_session=db_session, slug=slug, name=name, allow_binding=not no_binding
            )
            _echo_credentials(credentials)
    except integration_service.IntegrationError as exc:
        typer.echo(f"cannot create integration: {exc}", err=True)
        raise typer.Exit(2) from exc


@integration_app.command("list")
def integration_list() -> None:
    """Every integration: slug, key prefix, binding, state, last use."""
    prepare_database()
    with session_scope() as db_session:
        for row in integration_service.get_all(db_session=db_session):
            state = "enabled" if row.enabled else "disabled"
            binding = "binding" if row.allow_binding else "no-binding"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M} UTC" if row.last_used_at else "never used"
            typer.echo(f"{row.slug}\t{row.key_prefix}…\t{binding}\t{state}\t{used}\t{row.name}")


def _set_enabled(slug: str, enabled: bool) -> None:
    prepare_database()
    try:
        with session_scope() as db_session:
            integration_service.set_enabled(db_session=db_session, slug=slug, enabled=enabled)
    except integration_service.IntegrationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"integration {slug} {'enabled' if enabled else 'disabled'}")


@integration_app.command("disable")
def integration_disable(slug: Annotated[str, typer.Argument(help="The integration's slug.")]) -> None:
    """Refuse the integration's calls from now on."""
    _set_enabled(slug, False)


@integration_app.command("enable")
def integration_enable(slug: Annotated[str, typer.Argument(help="The integration's slug.")]) -> None:
    """Accept the integration's calls again."""
    _set_enabled(slug, True)


@integration_app.command("rotate")
def integration_rotate(slug: Annotated[str, typer.Argument(help="The integration's slug.")]) -> None:
    """Replace the API key and signing secret (the old ones stop working at once) and print the new ones once."""
    prepare_database()
    try:
        with session_scope() as db_session:
            _echo_credentials(integration_service.rotate_key(db_session=db_session, slug=slug))
    except integration_service.IntegrationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
