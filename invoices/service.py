"""Stored invoices: bulk upsert from the merchant platform's feed or a CSV file, and reading one back."""

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.database import dialect_insert
from invoices.backend import InvoiceRecord, InvoiceStatus
from invoices.models import NO_CODE, Invoice
from invoices.schemas import FIELDS, InvoiceIn

UPSERT_CHUNK = 500


def _row_values(record: InvoiceRecord) -> dict:
    values = {name: getattr(record, name) for name in FIELDS}
    values["code"] = record.code or NO_CODE
    values["status"] = record.status.value
    values["updated_at"] = utc(record.updated_at)
    # SQLite drops the offset of what it stores (and returns it naive, read as UTC): store UTC on every database.
    values["issued_at"] = utc(record.issued_at) if record.issued_at else None
    return values


def upsert_many(*, db_session: Session, records: Iterable[InvoiceRecord]) -> int:
    """Insert new invoices and overwrite known ones (same code and number); return how many were written."""
    insert = dialect_insert(db_session)
    rows = {(r.code or NO_CODE, r.number): _row_values(r) for r in records}  # the last of duplicates wins
    batch = list(rows.values())
    for start in range(0, len(batch), UPSERT_CHUNK):
        statement = insert(Invoice).values(batch[start : start + UPSERT_CHUNK])
        updated = {name: statement.excluded[name] for name in (*FIELDS, "updated_at") if name not in ("code", "number")}
        db_session.execute(statement.on_conflict_do_update(index_elements=["code", "number"], set_=updated))
    return len(batch)


def get(*, db_session: Session, code: str | None, number: str) -> Invoice | None:
    """One stored invoice by code (None for 数电票) and number."""
    query = select(Invoice).where(Invoice.code == (code or NO_CODE), Invoice.number == number)
    return db_session.scalar(query.execution_options(populate_existing=True))


def list_for_tax_ids(*, db_session: Session, tax_ids: Iterable[str], limit: int = 50) -> list[Invoice]:
    """Stored invoices a merchant sold or bought (by its taxpayer ids), latest first."""
    wanted = list(tax_ids)
    if not wanted:
        return []
    query = (
        select(Invoice)
        .where(or_(Invoice.seller_tax_id.in_(wanted), Invoice.buyer_tax_id.in_(wanted)))
        .order_by(Invoice.updated_at.desc(), Invoice.id.desc())
        .limit(limit)
    )
    return list(db_session.scalars(query))


def to_record(invoice: Invoice) -> InvoiceRecord:
    """The backend-neutral record of a stored invoice."""
    values = {name: getattr(invoice, name) for name in FIELDS}
    values["code"] = invoice.code or None
    values["status"] = InvoiceStatus(invoice.status)
    values["issued_at"] = utc(invoice.issued_at) if invoice.issued_at else None
    return InvoiceRecord(**values, updated_at=utc(invoice.updated_at))


@dataclass
class ImportReport:
    """What an import did: rows read, invoices written, and each rejected row with its reason."""

    rows: int = 0
    written: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def describe_error(exc: ValidationError) -> str:
    """A one-line reason from a validation error."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())


def import_csv(*, db_session: Session, stream: TextIO) -> ImportReport:
    """Upsert the invoices of a CSV file with a header row (columns as in the feed API); bad rows are reported."""
    report = ImportReport()
    reader = csv.DictReader(stream)
    if not reader.fieldnames or "number" not in reader.fieldnames or "status" not in reader.fieldnames:
        raise ValueError("the CSV needs a header row with at least the columns number and status")
    records = []
    for line, row in enumerate(reader, start=2):
        report.rows += 1
        try:
            records.append(InvoiceIn.model_validate({k: v for k, v in row.items() if k and v not in (None, "")}))
        except ValidationError as exc:
            report.errors.append((line, describe_error(exc)))
    report.written = upsert_many(db_session=db_session, records=[r.to_record() for r in records])
    return report
