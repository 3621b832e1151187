"""What an invoice's status means to the merchant and what to do next, in Chinese, with the related FAQ topic."""

from dataclasses import dataclass
from datetime import datetime

from core.clock import BEIJING, utc
from invoices.backend import InvoiceRecord, InvoiceStatus, Lookup

LABELS = {
    InvoiceStatus.ISSUING: "开具中",
    InvoiceStatus.ISSUED: "已开具",
    InvoiceStatus.FAILED: "开具失败",
    InvoiceStatus.SIGNING: "已开具，签章中",
    InvoiceStatus.SIGN_FAILED: "已开具，签章失败",
    InvoiceStatus.VOIDED: "已作废",
    InvoiceStatus.RED_PENDING: "红冲处理中（红字确认单待确认）",
    InvoiceStatus.RED_PARTIAL: "已部分红冲",
    InvoiceStatus.RED_FULL: "已全额红冲",
    InvoiceStatus.DELIVERED: "已交付",
}

NEXT_STEPS = {
    InvoiceStatus.ISSUING: (
        "平台正在处理，通常几分钟内完成。请不要重复开具，以免开出两张发票；我可以帮您盯着，状态一变就通知您。"
    ),
    InvoiceStatus.ISSUED: (
        "发票已开具成功。数电票会自动交付到购买方的税务数字账户，您也可以下载 PDF/OFD 或通过邮件发给对方。"
    ),
    InvoiceStatus.FAILED: "这张发票没有开具成功，不会占用额度或号码。请按失败原因修改开票信息后重新开具。",
    InvoiceStatus.SIGNING: "发票已经开出，正在签章，稍后即可下载版式文件。请不要重新开票。",
    InvoiceStatus.SIGN_FAILED: (
        "发票已经开出，只是签章（版式文件）没有生成。请不要重新开票，"
        "在开票平台对这张发票选择“重新签章/重新生成版式文件”即可。"
    ),
    InvoiceStatus.VOIDED: "这张发票已作废，不能再使用；如需开票请重新开具一张。",
    InvoiceStatus.RED_PENDING: (
        "红字发票信息确认单正在等待对方确认，72小时内未确认会自动作废，请提醒对方及时在税务数字账户中确认。"
    ),
    InvoiceStatus.RED_PARTIAL: "这张发票已部分红冲，剩余金额仍然有效；如需继续冲红，可对剩余金额再开红字发票。",
    InvoiceStatus.RED_FULL: "这张发票已全额红冲，不能再用于抵扣或报销；如需重新开票请开具新的蓝字发票。",
    InvoiceStatus.DELIVERED: "发票已交付给购买方。如对方说没收到，请核对接收邮箱或让对方在税务数字账户中查看。",
}

STATUS_TOPICS = {
    InvoiceStatus.ISSUING: "issue_no_response_duplicate",
    InvoiceStatus.SIGN_FAILED: "delivery_sign_failed",
    InvoiceStatus.RED_PENDING: "red_digital_unconfirmed",
    InvoiceStatus.RED_PARTIAL: "red_partial",
    InvoiceStatus.DELIVERED: "delivery_not_received",
}

# Words in a failure reason and the FAQ topic (or guide) that deals with them, most specific first.
FAILURE_TOPICS = (
    (("额度", "授信"), "quota_insufficient"),
    (("购买方", "购方", "税号", "纳税人识别号"), "buyer_taxid_invalid"),
    (("离线",), "issue_offline_limit"),
    (("截止", "抄报", "清卡", "锁死"), "issue_deadline_lock"),
    (("人脸", "身份认证", "实名"), "issue_face_auth"),
    (("商品编码", "税收分类", "编码"), "issue_tax_category_code"),
    (("领购", "没有可用发票", "空白发票"), "issue_no_blank_invoice"),
    (("繁忙", "超时", "网络"), "busy_server"),
)

RED_CONFIRMATION = {
    "01": "无需确认",
    "02": "销方已录入，等待购方确认",
    "03": "购方已录入，等待销方确认",
    "04": "购销双方已确认",
    "05": "已作废（购方否认）",
    "06": "已作废（销方否认）",
    "07": "已作废（超过72小时未确认）",
    "08": "已作废（发起方已撤销）",
    "09": "已作废（确认后撤销）",
    "10": "已作废（异常凭证）",
    "11": "已作废（纳税人状态异常阻断）",
}

NOT_FOUND = (
    "暂时没有查到这张发票，或它不属于您绑定的企业。常见原因：\n"
    "1. 刚开具不久，数据同步需要一段时间（通常几分钟，偶尔更久）；\n"
    "2. 离线开具的发票还没有上传；\n"
    "3. 号码或代码输错了一位。\n"
    "请先不要重新开具，以免重复开票。我可以帮您盯着这张发票，查到后第一时间通知您。"
)


@dataclass(frozen=True)
class Explanation:
    """The merchant-facing text of a status and the FAQ topic it relates to (when any)."""

    text: str
    topic: str | None


def failure_topic(reason: str | None) -> str:
    """The FAQ topic for an issuing failure's reason."""
    for words, topic in FAILURE_TOPICS:
        if reason and any(word in reason for word in words):
            return topic
    return "issue_failed_generic"


def freshness(lookup: Lookup, now: datetime | None = None) -> str:
    """How fresh the answer is, e.g. "（数据更新于 3 分钟前）"."""
    seconds = max(0, int((utc(now) - utc(lookup.fetched_at)).total_seconds()))
    if seconds < 60:
        return "（刚刚查询）" if not lookup.cached else "（数据更新于 1 分钟内）"
    if seconds < 3600:
        return f"（数据更新于 {seconds // 60} 分钟前）"
    return f"（数据更新于 {seconds // 3600} 小时前）"


def explain(record: InvoiceRecord) -> Explanation:
    """Status, details and next step of a found invoice."""
    lines = [f"状态：{LABELS[record.status]}"]
    if record.status is InvoiceStatus.FAILED and record.failure_reason:
        lines.append(f"失败原因：{record.failure_reason}")
    if record.red_confirmation:
        lines.append(f"红字确认单：{RED_CONFIRMATION.get(record.red_confirmation, record.red_confirmation)}")
    if record.issued_at:
        lines.append(f"开票时间：{utc(record.issued_at).astimezone(BEIJING):%Y-%m-%d %H:%M}")
    if record.buyer_name:
        lines.append(f"购买方：{record.buyer_name}")
    if record.total:
        lines.append(f"价税合计：{record.total} 元")
    if record.delivered_via:
        lines.append(f"交付方式：{record.delivered_via}")
    lines.append(NEXT_STEPS[record.status])
    topic = failure_topic(record.failure_reason) if record.status is InvoiceStatus.FAILED else None
    return Explanation("\n".join(lines), topic or STATUS_TOPICS.get(record.status))


FINAL = frozenset(
    {
        InvoiceStatus.ISSUED,
        InvoiceStatus.DELIVERED,
        InvoiceStatus.FAILED,
        InvoiceStatus.SIGN_FAILED,
        InvoiceStatus.VOIDED,
        InvoiceStatus.RED_PARTIAL,
        InvoiceStatus.RED_FULL,
    }
)
