"""The SQL backend: invoices the merchant platform fed into our own database."""

from sqlalchemy.exc import SQLAlchemyError

from core.database import session_scope
from invoices import service
from invoices.backend import BackendUnavailable, Lookup


class SqlInvoiceBackend:
    """Reads the `invoice` table; always as fresh as the last feed."""

    name = "sql"

    def lookup(self, *, code: str | None, number: str) -> Lookup:
        """The stored invoice, or a Lookup without a record."""
        try:
            with session_scope() as db_session:
                invoice = service.get(db_session=db_session, code=code, number=number)
                return Lookup(service.to_record(invoice) if invoice else None, source=self.name)
        except SQLAlchemyError as exc:
            raise BackendUnavailable(f"invoice table unreadable: {type(exc).__name__}") from exc
