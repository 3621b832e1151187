"""Invoice feed: the merchant platform pushes invoices (bulk upsert) for the SQL backend."""

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from core.web import DbSession, require_invoice_feed
from invoices import service
from invoices.schemas import InvoiceIn

router = APIRouter(prefix="/api/invoices", tags=["invoices"], dependencies=[Depends(require_invoice_feed)])
MAX_BATCH = 5000


class InvoiceBatch(BaseModel):
    """A batch of invoices to insert or update."""

    invoices: list[InvoiceIn] = Field(max_length=MAX_BATCH)


@router.post("")
def upsert_invoices(batch: InvoiceBatch, db_session: DbSession) -> dict:
    """Insert or update invoices by (code, number); the whole batch is written or none of it."""
    if not batch.invoices:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the batch holds no invoices")
    written = service.upsert_many(db_session=db_session, records=[invoice.to_record() for invoice in batch.invoices])
    return {"written": written}
