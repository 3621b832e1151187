"""Invoice lookup: recognise the request and the invoice number; status itself comes from a backend later."""

import re

from bot.messages import Option, Reply
from handlers.base import Turn
from knowledge.identifiers import InvoiceScan
from knowledge.text import fold

_LOOKUP = re.compile(
    r"(查(?!验|重)|查询|查一下|查下|查查|帮我查|看看|看一下|跟踪)(一下|下)?(我|我们|我的|我们的)?.{0,8}(发票|票)(的)?(状态|进度|开好|到哪|开出来)?"
    r"|(发票|票)(的)?(状态|进度)(查询)?|发票(开好了没|开出来了没|到哪了)"
)
_HOW_TO = re.compile(
    r"验|真伪|勾选|抵扣|认证|红冲|作废|怎么|如何|为什么|为啥|咋|能不能|能否|可以吗|吗|几次|提示|报错|失败|不了|不到|没有|无法|规则|流程|步骤|多久"
)

ASK_NUMBER = (
    "好的，我来帮您查发票状态。请发送发票号码：\n"
    "· 数电票：20位发票号码（如 25112000000012345678）\n"
    "· 税控发票：10位或12位发票代码 + 8位发票号码（中间用空格隔开）"
)


def wants_lookup(text: str) -> bool:
    """True when the merchant asks to check an invoice but gives no number, e.g. "我想查发票状态"."""
    folded = fold(text)
    return bool(_LOOKUP.search(folded)) and not _HOW_TO.search(_LOOKUP.sub("", folded))


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
    if ref.kind == "digital":
        described = f"数电票，发票号码 {ref.number}"
    else:
        described = f"税控发票，发票代码 {ref.code}，发票号码 {ref.number}"
    warning = f"\n提醒：{'；'.join(ref.warnings)}，请确认号码无误。" if ref.warnings else ""
    return Reply(
        text=f"收到，您要查询的是{described}。我将为您查询这张发票的开具和交付状态。{warning}",
        intent="invoice_lookup",
        invoice=ref.as_dict(),
        options=[Option("号码不对，重新输入", "intent:invoice_lookup"), Option("转人工客服", "intent:handoff")],
    )
