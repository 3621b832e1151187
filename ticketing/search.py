"""Finding tickets by what merchants wrote: an FTS5 trigram index on SQLite (migration 0009), ILIKE served by a
pg_trgm index on PostgreSQL; needles shorter than a trigram fall back to LIKE."""

import re
import sqlite3

from sqlalchemy import ColumnElement, String, cast, column, literal_column, or_, select, table
from sqlalchemy.orm import Session

from merchants.models import Merchant, MerchantTaxId
from ticketing.models import MERCHANT, Ticket, TicketMessage

FTS = "ticket_message_fts"
TRGM_INDEX = "ix_ticket_message_text_trgm"
SEARCH_OBJECTS = (FTS, TRGM_INDEX)  # made by the migration, not described by the models
SQLITE_TRIGRAM = sqlite3.sqlite_version_info >= (3, 34, 0)
TRIGRAM = 3
_INVOICE_LIKE = re.compile(r"^[0-9]{8,20}$")
_fts = table(FTS, column("rowid"))


def _phrase(needle: str) -> str:
    """An FTS5 phrase matching the needle anywhere (the trigram tokenizer matches substrings)."""
    return '"' + needle.replace('"', '""') + '"'


def _message_hits(dialect: str, needle: str) -> ColumnElement[bool]:
    """Tickets with a merchant message containing the needle (case-insensitive)."""
    if dialect == "sqlite" and SQLITE_TRIGRAM and len(needle) >= TRIGRAM:
        rows = select(_fts.c.rowid).where(literal_column(FTS).op("MATCH")(_phrase(needle)))
        messages = select(TicketMessage.ticket_id).where(TicketMessage.id.in_(rows))
    else:
        messages = select(TicketMessage.ticket_id).where(
            TicketMessage.author_kind == MERCHANT, TicketMessage.text.icontains(needle, autoescape=True)
        )
    return Ticket.id.in_(messages)


def matches(*, db_session: Session, needle: str) -> ColumnElement[bool]:
    """Tickets a search box entry finds: a word of a merchant message, the merchant's name, a full taxpayer id, an
    invoice number in a message or in what the bot recorded (the subject and the chat user id are the caller's)."""
    dialect = db_session.get_bind().dialect.name
    named = select(Merchant.id).where(Merchant.name.icontains(needle, autoescape=True))
    owning = select(MerchantTaxId.merchant_id).where(MerchantTaxId.tax_id == needle.upper())
    conditions = [
        _message_hits(dialect, needle),
        Ticket.merchant_id.in_(named),
        Ticket.merchant_id.in_(owning),
    ]
    if _INVOICE_LIKE.match(needle):
        conditions.append(cast(Ticket.context, String).contains(needle, autoescape=True))
    return or_(*conditions)


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Alembic's filter for comparing the database with the models: the search index (and FTS5's own tables) is the
    migration's, not the models'."""
    return not (name and (name.startswith(FTS) or name == TRGM_INDEX))
