"""Binding a chat identity to its merchant (taxpayer id + one-time code), showing and removing the binding."""

import re

from core.identifiers import InvoiceRef, check_taxpayer_id, find_taxpayer_id
from core.identifiers.binding import BIND_COMMAND, BINDING_CODE, UNBIND_COMMAND
from core.messages import Option, Reply
from core.redact import mask
from core.settings import get_settings
from core.text import clean
from handlers import invoice, payloads
from handlers.turn import Turn
from invoices import watches
from merchants import service as merchants
from ticketing import service as ticket_service

AWAITING = "binding"
_STATUS = re.compile(r"^(我的|查看|查询)?绑定(状态|信息|情况)|^我绑定了(什么|哪个|哪家)")
_ID_LIKE = re.compile(r"(?<![0-9A-Z])[0-9A-Z]{12,22}(?![0-9A-Z])")

ASK = (
    "请发送贵司的税号（统一社会信用代码）和绑定码，中间用空格隔开，例如：\n"
    "91110108MA01ABCD5T 12345678\n"
    "绑定码由贵司管理员在商户后台生成（或联系客服获取），只能使用一次，过期需重新获取。绑定后即可查询本企业的发票状态。"
)
NOT_HERE = (
    "抱歉，当前接入方式（演示模式，或未开通商户绑定的渠道）不能绑定商户，也就无法查询企业的发票状态。"
    "常见的开票问题可以继续问我；如需办理绑定，请通过贵司已开通的正式渠道（如公众号），或回复“转人工”。"
)
REJECTED = (
    "税号或绑定码不正确，或绑定码已过期、已被使用。请核对后重新发送；如需新的绑定码，请联系贵司管理员或回复“转人工”。"
)

TAX_ID_LOCKED = (
    "该税号近期错误尝试过多，为保护企业信息，此前签发的绑定码已暂停使用。"
    "请联系贵司管理员或客服重新获取绑定码后再绑定，新绑定码可立即使用；也可回复“转人工”。"
)


def wants_bind(turn: Turn) -> bool:
    """True for "绑定", "我要绑定企业", or a message that starts with 绑定 followed by the details."""
    return bool(BIND_COMMAND.match(turn.folded)) and not wants_status(turn)


def wants_unbind(turn: Turn) -> bool:
    """True for "解绑", "解除绑定"."""
    return bool(UNBIND_COMMAND.match(turn.folded))


def wants_status(turn: Turn) -> bool:
    """True for "我的绑定", "绑定状态"."""
    return bool(_STATUS.match(turn.folded)) or turn.folded in ("我的绑定", "我的企业")


def on_text(turn: Turn) -> Reply | None:
    """Binding asked for in words (解绑, 绑定状态, 绑定, or the taxpayer id and code the bot asked for); None for
    anything else. The wait for binding details lasts one message."""
    awaiting, turn.state.awaiting = turn.state.awaiting, None
    if wants_unbind(turn):
        return confirm_unbind(turn)
    if wants_status(turn):
        return status(turn)
    if wants_bind(turn) or (awaiting == AWAITING and looks_like_details(turn.text)):
        return bind(turn)
    return None


def on_option(turn: Turn) -> Reply | None:
    """binding:unbind asks first, binding:unbind:yes unbinds, binding:keep keeps; None for anything else."""
    args = turn.payload.args
    if args == ("unbind",):
        return confirm_unbind(turn)
    if args == ("unbind", "yes"):
        return unbind(turn)
    if args == ("keep",):
        return keep(turn)
    return None


def bind(turn: Turn) -> Reply:
    """Bind this identity (or explain how); then look up the invoice the merchant asked about before binding."""
    reply = start(turn)
    pending = turn.state.pending_invoice
    if not pending or not is_bound(turn):
        return reply
    turn.state.pending_invoice = None
    ref = InvoiceRef(number=pending.get("number"), code=pending.get("code"))
    found = invoice.status(turn, ref)
    found.text = f"{reply.text}\n\n{found.text}"
    return found


def has_details(text: str) -> bool:
    """True when the message carries a taxpayer id and an 8-digit code."""
    upper = clean(text).upper()
    return find_taxpayer_id(upper) is not None and BINDING_CODE.search(_without_tax_id(upper)) is not None


def looks_like_details(text: str) -> bool:
    """True when the message seems to carry binding details, right or wrong (a long code-like token)."""
    return has_details(text) or _ID_LIKE.search(clean(text).upper()) is not None


def _without_tax_id(text: str) -> str:
    tax_id = find_taxpayer_id(text)
    return text.replace(tax_id, " ") if tax_id else text


def is_bound(turn: Turn) -> bool:
    """Whether this chat identity is bound to a merchant."""
    identity = {"channel": turn.message.channel, "user_id": turn.message.user_id}
    return merchants.get_binding(db_session=turn.db_session, **identity) is not None


def refused(turn: Turn) -> Reply | None:
    """The polite refusal when this identity may not bind (demo mode, an integration without binding); else None."""
    if turn.message.may_bind:
        return None
    return Reply(text=NOT_HERE, intent="binding", options=[payloads.HANDOFF])


def start(turn: Turn) -> Reply:
    """Explain what to send, or show the existing binding."""
    if (refusal := refused(turn)) is not None:
        return refusal
    binding = merchants.get_binding(
        db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id
    )
    if binding is not None:
        return status(turn)
    if looks_like_details(turn.text):
        return attempt(turn)
    turn.state.awaiting = AWAITING
    return Reply(text=ASK, intent="binding", options=[payloads.HANDOFF])


def attempt(turn: Turn) -> Reply:
    """Bind with the taxpayer id and code in the message."""
    turn.state.awaiting = None
    if (refusal := refused(turn)) is not None:
        return refusal
    upper = clean(turn.text).upper()
    raw_tax_id = find_taxpayer_id(upper)
    code_match = BINDING_CODE.search(_without_tax_id(upper))
    id_like = _ID_LIKE.search(upper)
    if raw_tax_id is None and id_like is not None and not check_taxpayer_id(id_like.group(0)).ok:
        turn.state.awaiting = AWAITING
        problem = check_taxpayer_id(id_like.group(0)).problem
        return Reply(text=f"税号有误：{problem}。请核对后重新发送税号和绑定码。", intent="binding")
    if raw_tax_id is None or code_match is None:
        turn.state.awaiting = AWAITING
        return Reply(text="没有识别到税号和8位绑定码。\n" + ASK, intent="binding")
    check = check_taxpayer_id(raw_tax_id)
    if not check.ok:
        turn.state.awaiting = AWAITING
        return Reply(text=f"税号有误：{check.problem}。请核对后重新发送税号和绑定码。", intent="binding")
    settings = get_settings()
    limits = merchants.BindingLimits(
        max_failures=settings.binding_max_failures, window_seconds=settings.binding_failure_window_seconds
    )
    result = merchants.bind(
        db_session=turn.db_session,
        store=turn.store,
        channel=turn.message.channel,
        user_id=turn.message.user_id,
        tax_id=check.value,
        code=code_match.group(0),
        limits=limits,
    )
    if result.locked_tax_id is not None:
        _audit_lock(turn, result.locked_tax_id, limits)
    if result.outcome == "rate_limited" and result.limited_by == "tax_id":
        return Reply(text=TAX_ID_LOCKED, intent="binding", options=[payloads.HANDOFF])
    if result.outcome == "rate_limited":
        minutes = max(1, result.retry_after_seconds // 60)
        return Reply(
            text=f"绑定尝试次数过多，为保护企业信息已暂停绑定，请约 {minutes} 分钟后再试，或回复“转人工”。",
            intent="binding",
        )
    if result.outcome == "rejected":
        turn.state.awaiting = AWAITING
        return Reply(text=REJECTED, intent="binding", options=[payloads.HANDOFF])
    return Reply(
        text=f"绑定成功！当前账号已绑定「{result.merchant.name}」。现在可以直接发送发票号码查询开票和交付状态。",
        intent="binding",
        options=[payloads.INVOICE_LOOKUP],
    )


def _audit_lock(turn: Turn, tax_id: str, limits: merchants.BindingLimits) -> None:
    """The audit event of a taxpayer id's binding lock (the taxpayer id masked)."""
    merchant = merchants.get_by_tax_id(db_session=turn.db_session, tax_id=tax_id)
    ticket_service.record_event(
        db_session=turn.db_session,
        action="binding_locked",
        after={
            "tax_id": mask(tax_id),
            "merchant_id": merchant.id if merchant else None,
            "channel": turn.message.channel,
            "wrong_tries": limits.per_tax_id,
            "window_seconds": limits.window_seconds,
        },
    )


def status(turn: Turn) -> Reply:
    """Which merchant this identity is bound to."""
    binding = merchants.get_binding(
        db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id
    )
    if binding is None:
        return Reply(text="当前账号还没有绑定企业。" + ASK, intent="binding", options=[payloads.BIND])
    merchant = merchants.get(db_session=turn.db_session, merchant_id=binding.merchant_id)
    tax_ids = "、".join(mask(t) for t in merchants.get_tax_ids(db_session=turn.db_session, merchant_id=merchant.id))
    return Reply(
        text=f"当前账号已绑定「{merchant.name}」（税号 {tax_ids}）。如需更换企业，请先解绑再重新绑定。",
        intent="binding",
        options=[payloads.INVOICE_LOOKUP, Option("解除绑定", payloads.make("binding", "unbind"))],
    )


def confirm_unbind(turn: Turn) -> Reply:
    """Ask before unbinding."""
    binding = merchants.get_binding(
        db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id
    )
    if binding is None:
        return Reply(text="当前账号没有绑定企业，无需解绑。", intent="binding", options=[payloads.BIND])
    return Reply(
        text="解绑后将无法查询该企业的发票，正在关注的发票也不再提醒。确定要解绑吗？",
        intent="binding",
        options=[
            Option("确认解绑", payloads.make("binding", "unbind", "yes")),
            Option("取消", payloads.make("binding", "keep")),
        ],
    )


def unbind(turn: Turn) -> Reply:
    """Remove the binding (and the identity's invoice watches)."""
    removed = merchants.unbind(db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id)
    watches.cancel(db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id)
    text = "已解除绑定。" if removed else "当前账号没有绑定企业。"
    return Reply(text=text + "如需重新绑定，回复“绑定”。", intent="binding")


def keep(turn: Turn) -> Reply:
    """The merchant changed its mind about unbinding."""
    return Reply(text="好的，绑定保持不变。", intent="binding")
