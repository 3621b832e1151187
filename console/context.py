"""The ticket's invoice as the context panel shows it: readable Chinese rows from what the conversation looked up and
what is stored now."""

from datetime import datetime
from typing import Any

from console.templating import localtime
from invoices.explain import LABELS
from invoices.models import Invoice

STATUS_LABELS = {str(status): label for status, label in LABELS.items()}
RESULT_LABELS = {
    "found": "已查到",
    "not_found": "未查到（或不属于该商户）",
    "unbound": "商户当时未绑定，未能查询",
    "unavailable": "发票系统当时无法查询",
}


def status_label(status: Any) -> str:
    """An invoice status code in words."""
    return STATUS_LABELS.get(str(status), "未知状态")


def _moment(value: Any) -> str | None:
    if isinstance(value, datetime):
        return localtime(value)
    try:
        return localtime(datetime.fromisoformat(str(value))) if value else None
    except ValueError:
        return None


def invoice_rows(saved: dict[str, Any] | None, stored: Invoice | None) -> list[tuple[str, str]]:
    """(label, value) rows for the invoice a ticket is about: number, status, amount, buyer, issue time (business
    time zone), what the merchant's lookup found and when; the stored invoice wins over the remembered lookup."""
    if not saved:
        return []
    rows = []
    if saved.get("code"):
        rows.append(("发票代码", str(saved["code"])))
    if saved.get("number"):
        rows.append(("发票号码", str(saved["number"])))
    status = stored.status if stored is not None else saved.get("status")
    if status:
        rows.append(("当前状态" if stored is not None else "查询时状态", status_label(status)))
    total = stored.total if stored is not None and stored.total else saved.get("total")
    if total:
        rows.append(("价税合计", f"¥{total}"))
    buyer = stored.buyer_name if stored is not None and stored.buyer_name else saved.get("buyer_name")
    if buyer:
        rows.append(("购买方", str(buyer)))
    issued = _moment(stored.issued_at if stored is not None and stored.issued_at else saved.get("issued_at"))
    if issued:
        rows.append(("开具时间", issued))
    reason = stored.failure_reason if stored is not None and stored.failure_reason else saved.get("failure_reason")
    if reason:
        rows.append(("失败原因", str(reason)))
    if saved.get("result"):
        rows.append(("商户查询结果", RESULT_LABELS.get(str(saved["result"]), "已查询")))
    looked_up = _moment(saved.get("looked_up_at"))
    if looked_up:
        rows.append(("查询时间", looked_up))
    return rows
