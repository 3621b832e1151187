"""Merchants in the console: the list with search, one merchant's page (taxpayer ids, chat identities, tickets,
invoices, watches), issuing a binding code, and looking an invoice up by number."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from console.context import status_label
from console.csrf import csrf_protect
from console.errors import not_found
from console.identity import Agent, require_agent
from console.pages import audit
from console.templating import localtime, render
from core.identifiers import scan
from core.settings import get_settings
from core.web import DbSession, RowId
from invoices import service as invoice_service
from invoices import watches
from invoices.backend import BackendUnavailable, InvoiceRecord
from invoices.factory import get_invoice_backend
from merchants import service as merchant_service
from merchants.models import Merchant
from ticketing import service as ticket_service

router = APIRouter(prefix="/console", tags=["console"], dependencies=[Depends(require_agent), Depends(csrf_protect)])
WATCH_STATE_LABELS = {"active": "关注中", "done": "已完成", "cancelled": "已取消", "expired": "已过期"}


def _require(db_session: Session, merchant_id: int) -> Merchant:
    merchant = merchant_service.get(db_session=db_session, merchant_id=merchant_id)
    if merchant is None:
        raise not_found(f"没有编号为 {merchant_id} 的商户")
    return merchant


@router.get("/merchants", response_class=Response)
def merchant_list(request: Request, user: Agent, db_session: DbSession) -> Response:
    """Merchants by name or taxpayer id (?q=), each with its taxpayer ids."""
    q = request.query_params.get("q", "").strip()[:100]
    merchants = merchant_service.search(db_session=db_session, text=q)
    tax_ids = {m.id: merchant_service.get_tax_ids(db_session=db_session, merchant_id=m.id) for m in merchants}
    return render(request, "merchants.html", {"q": q, "merchants": merchants, "tax_ids": tax_ids})


def _merchant_page(
    request: Request, db_session: Session, merchant: Merchant, *, issued: dict[str, Any] | None = None
) -> Response:
    tax_ids = merchant_service.get_tax_ids(db_session=db_session, merchant_id=merchant.id)
    bindings = merchant_service.get_bindings(db_session=db_session, merchant_id=merchant.id)
    identities = [(b.channel, b.user_id) for b in bindings]
    context = {
        "merchant": merchant,
        "tax_ids": tax_ids,
        "bindings": bindings,
        "tickets": ticket_service.get_for_merchant(
            db_session=db_session, merchant_id=merchant.id, identities=identities
        ),
        "invoices": invoice_service.list_for_tax_ids(db_session=db_session, tax_ids=tax_ids),
        "watches": watches.list_for_identities(db_session=db_session, identities=identities),
        "status_label": status_label,
        "WATCH_STATE_LABELS": WATCH_STATE_LABELS,
        "issued": issued,
    }
    return render(request, "merchant.html", context)


@router.get("/merchants/{merchant_id}", response_class=Response)
def merchant_page(request: Request, merchant_id: RowId, user: Agent, db_session: DbSession) -> Response:
    """One merchant: taxpayer ids, bound chat identities, tickets, invoices and watches."""
    return _merchant_page(request, db_session, _require(db_session, merchant_id))


@router.post("/merchants/{merchant_id}/code", response_class=Response)
def issue_code(request: Request, merchant_id: RowId, user: Agent, db_session: DbSession) -> Response:
    """Issue a single-use binding code and show it this once (audited, the code itself never stored)."""
    merchant = _require(db_session, merchant_id)
    code, row = merchant_service.issue_code(
        db_session=db_session, merchant_id=merchant.id, ttl_seconds=get_settings().binding_code_ttl_seconds
    )
    expires = localtime(row.expires_at)
    audit(
        db_session,
        user,
        "binding_code_issued",
        after={"merchant_id": merchant.id, "merchant": merchant.name, "expires_at": expires},
    )
    db_session.commit()
    return _merchant_page(request, db_session, merchant, issued={"code": code, "expires": expires})


def _record_rows(record: InvoiceRecord, fetched_at: datetime | None) -> list[tuple[str, str]]:
    rows = [("发票代码", record.code)] if record.code else []
    rows += [("发票号码", record.number), ("状态", status_label(record.status.value))]
    details = (
        ("销售方税号", record.seller_tax_id),
        ("购买方", record.buyer_name),
        ("购买方税号", record.buyer_tax_id),
        ("价税合计", f"¥{record.total}" if record.total else None),
        ("开具时间", localtime(record.issued_at) if record.issued_at else None),
        ("失败原因", record.failure_reason),
        ("交付方式", record.delivered_via),
        ("数据更新时间", localtime(record.updated_at) if record.updated_at else None),
        ("查询时间", localtime(fetched_at) if fetched_at else None),
    )
    return rows + [(label, value) for label, value in details if value]


@router.post("/invoices/lookup", response_class=Response)
def invoice_lookup(
    request: Request, user: Agent, db_session: DbSession, number: Annotated[str, Form()] = ""
) -> Response:
    """An invoice by number (数电票 20 digits, or 发票代码 + 号码): its status and details, and whose it is."""
    found = scan(number.strip()[:60])
    context: dict[str, Any] = {"number": number.strip()[:60], "rows": [], "error": None, "owners": []}
    if found is None or found.ref is None or found.problem:
        context["error"] = (found.problem if found is not None and found.problem else "没有识别到发票号码") + "。"
        return render(request, "invoice_lookup.html", context, status_code=400)
    ref = found.ref
    try:
        lookup = get_invoice_backend().lookup(code=ref.code, number=ref.number)
    except BackendUnavailable:
        context["error"] = "发票系统暂时无法查询（对方系统繁忙或维护中），请稍后再试。"
        return render(request, "invoice_lookup.html", context, status_code=503)
    audit(db_session, user, "invoice_lookup", after={"number": ref.number, "found": lookup.record is not None})
    db_session.commit()
    if lookup.record is None:
        context["error"] = f"没有查到号码为 {ref.number} 的发票。"
        return render(request, "invoice_lookup.html", context, status_code=404)
    record = lookup.record
    context["rows"] = _record_rows(record, lookup.fetched_at)
    for tax_id in {record.seller_tax_id, record.buyer_tax_id} - {None}:
        owner = merchant_service.get_by_tax_id(db_session=db_session, tax_id=tax_id)
        if owner is not None and owner not in context["owners"]:
            context["owners"].append(owner)
    return render(request, "invoice_lookup.html", context)
