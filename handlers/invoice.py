"""Invoice lookup: recognise the request and the invoice number, check it, and give the status from the backend."""

import re

from core.identifiers import InvoiceRef, InvoiceScan
from core.messages import Option, Reply
from core.text import fold
from handlers import payloads
from handlers.turn import Turn
from invoices import explain, flows

_LOOKUP = re.compile(
    r"(查(?!验|重)|查询|查一下|查下|查查|帮我查|看看|看一下|跟踪)(一下|下)?(我|我们|我的|我们的)?.{0,8}(发票|票)(的)?(状态|进度|开好|到哪|开出来)?"
    r"|(发票|票)(的)?(状态|进度)(查询)?|发票(开好了没|开出来了没|到哪了)"
)
_HOW_TO = re.compile(
    r"验|真伪|勾选|抵扣|认证|红冲|作废|怎么|如何|为什么|为啥|咋|能不能|能否|可以吗|吗|几次|提示|报错|失败|不了|不到|没有|无法|规则|流程|步骤|多久"
)

_MENTIONS = ("发票", "票号", "号码", "代码", "查询", "查一下")
ASK_NUMBER = (
    "好的，我来帮您查发票状态。请发送发票号码：\n"
    "· 数电票：20位发票号码（如 25112000000012345678）\n"
    "· 税控发票：10位或12位发票代码 + 8位发票号码（中间用空格隔开）"
)


RETYPE = Option("号码不对，重新输入", payloads.INVOICE_LOOKUP.payload)


def names_invoice(turn: Turn) -> bool:
    """True when the message carries an invoice number (right or wrong) that is meant as one."""
    found = turn.scan
    return found is not None and (found.ref is not None or any(word in turn.text for word in _MENTIONS))


def on_number(turn: Turn) -> Reply:
    """The invoice number in the message: its status, or what is wrong with it."""
    return handle(turn, turn.scan)


def wants_lookup(turn: Turn) -> bool:
    """True when the merchant asks to check an invoice but gives no number, e.g. "我想查发票状态" (not when the
    message quotes an on-screen error a guide covers, such as "查无此票")."""
    folded = turn.folded
    asks = bool(_LOOKUP.search(folded)) and not _HOW_TO.search(_LOOKUP.sub("", folded))
    return asks and not any(error in folded for error in _guide_errors(turn))


def ask_number(turn: Turn) -> Reply:
    """Ask for the invoice number to look up."""
    return handle(turn, None)


def _guide_errors(turn: Turn) -> set[str]:
    return {fold(error) for guide in turn.guides.values() for error in guide.errors}


def handle(turn: Turn, invoice_scan: InvoiceScan | None) -> Reply:
    """Confirm the recognised invoice number, explain what is wrong with it, or ask for it."""
    if invoice_scan is None:
        return Reply(text=ASK_NUMBER, intent="invoice_lookup", invoice={})
    ref = invoice_scan.ref
    if ref is None or invoice_scan.problem:
        found = ""
        if ref is not None:
            found = (
                "已识别："
                + "，".join(f"{'发票代码' if k == 'code' else '发票号码'} {v}" for k, v in ref.as_dict().items())
                + "。"
            )
        return Reply(
            text=f"{found}{invoice_scan.problem}。请核对后重新发送。",
            intent="invoice_lookup",
            invoice=ref.as_dict() if ref else {},
        )
    return status(turn, ref)


def remembered(invoice: dict[str, str], answer: flows.StatusAnswer) -> dict[str, str]:
    """What the conversation keeps of a lookup for a later ticket: the number, what the lookup found and, for the
    merchant's own invoice, its status, amount, buyer and issue time."""
    kept = {**invoice, "result": answer.kind}
    record = answer.lookup.record if answer.lookup is not None else None
    if answer.lookup is not None:
        kept["looked_up_at"] = answer.lookup.fetched_at.isoformat()
    if record is not None:
        kept["status"] = record.status.value
        extra = {"total": record.total, "buyer_name": record.buyer_name, "failure_reason": record.failure_reason}
        kept.update({key: value for key, value in extra.items() if value})
        if record.issued_at is not None:
            kept["issued_at"] = record.issued_at.isoformat()
    return kept


def status(turn: Turn, ref: InvoiceRef) -> Reply:
    """The invoice's status for a bound merchant, "not found or not yours" otherwise, with what to do next."""
    invoice = ref.as_dict()
    warning = f"\n提醒：{'；'.join(ref.warnings)}，请确认号码无误。" if ref.warnings else ""
    answer = flows.lookup_for(
        db_session=turn.db_session,
        backend=turn.invoices,
        channel=turn.message.channel,
        user_id=turn.message.user_id,
        code=ref.code,
        number=ref.number,
    )
    turn.state.last_invoice = remembered(invoice, answer)
    heading = f"{ref.describe()} " + (f"发票代码 {ref.code} 号码 {ref.number}" if ref.code else f"号码 {ref.number}")
    if answer.kind == "unbound":
        turn.state.pending_invoice = invoice
        return Reply(
            text=f"收到{heading}。为保护企业信息，查询发票状态需要先绑定企业（税号 + 绑定码），"
            "绑定后我会接着查这张发票。",
            intent="invoice_lookup",
            invoice=invoice,
            options=[payloads.BIND, payloads.HANDOFF],
        )
    watch_option = Option("帮我盯着这张发票", payloads.make("watch", "add", ref.code or "", ref.number))
    if answer.kind == "unavailable":
        return Reply(
            text=f"{heading}：发票系统暂时无法查询（对方系统繁忙或维护中），请稍后再试。"
            "我也可以帮您盯着这张发票，查到后第一时间通知您。",
            intent="invoice_lookup",
            invoice=invoice,
            options=[watch_option, payloads.HANDOFF],
        )
    if answer.kind == "not_found":
        return Reply(
            text=f"{heading}\n{explain.NOT_FOUND}{warning}",
            intent="invoice_lookup",
            topic="missing_query_no_record",
            invoice=invoice,
            options=[watch_option, RETYPE, payloads.HANDOFF],
        )
    record = answer.lookup.record
    explained = explain.explain(record)
    options = [] if record.status in explain.FINAL else [watch_option]
    if explained.topic and explained.topic in turn.knowledge.entries:
        options.append(
            Option(f"查看：{turn.knowledge.entries[explained.topic].question}"[:20], f"faq:{explained.topic}")
        )
    options.append(payloads.HANDOFF)
    return Reply(
        text=f"{heading}\n{explained.text}\n{explain.freshness(answer.lookup)}{warning}",
        intent="invoice_lookup",
        topic=explained.topic,
        invoice=invoice,
        options=options,
    )
