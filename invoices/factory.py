"""The configured invoice backend, one per process."""

from functools import lru_cache

from core.settings import get_settings
from core.store import get_store
from invoices.backend import InvoiceBackend
from invoices.http_backend import HttpInvoiceBackend
from invoices.sql_backend import SqlInvoiceBackend


@lru_cache
def get_invoice_backend() -> InvoiceBackend:
    """The configured invoice backend: our own table ("sql") or the merchant platform's API ("http")."""
    settings = get_settings()
    if settings.invoice_backend == "http":
        return HttpInvoiceBackend.from_settings(get_store())
    if settings.invoice_backend != "sql":
        raise ValueError(f"INVOICE_BACKEND must be sql or http, not {settings.invoice_backend!r}")
    return SqlInvoiceBackend()
