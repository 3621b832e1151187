"""Invoice watches in chat: start one, list them, cancel them."""

import re

from core.messages import Option, Reply
from core.settings import get_settings
from handlers import payloads
from handlers.turn import Turn
from invoices import watches
from invoices.flows import watch_label
from merchants import service as merchants

_LIST = re.compile(r"^(查看|我的|所有)?(关注|提醒|盯着的发票|跟踪)(列表|的发票)?$|^(取消|停止)(关注|提醒|跟踪)")


def wants_list(turn: Turn) -> bool:
    """True for "我的关注", "关注列表", "取消提醒"."""
    return bool(_LIST.match(turn.folded))


def on_option(turn: Turn) -> Reply | None:
    """watch:list, watch:add:<code>:<number>, watch:cancel:<id|all>; None for anything else."""
    args = turn.payload.args
    if args == ("list",):
        return show(turn)
    if len(args) == 3 and args[0] == "add" and args[2].isdigit():
        return add(turn, args[1] or None, args[2])
    if len(args) == 2 and args[0] == "cancel":
        return cancel(turn, None if args[1] == "all" else int(args[1]) if args[1].isdigit() else -1)
    return None


def add(turn: Turn, code: str | None, number: str) -> Reply:
    """Start watching an invoice for this identity."""
    channel, user_id = turn.message.channel, turn.message.user_id
    if not merchants.tax_ids_for(db_session=turn.db_session, channel=channel, user_id=user_id):
        return Reply(text="关注发票需要先绑定企业。", intent="invoice_watch", options=[payloads.BIND])
    settings = get_settings()
    try:
        watches.add(
            db_session=turn.db_session,
            channel=channel,
            user_id=user_id,
            code=code,
            number=number,
            last_status=None,
            first_check_seconds=settings.watch_first_check_seconds,
            max_hours=settings.watch_max_hours,
        )
    except watches.WatchLimitReached:
        return Reply(
            text=f"您正在关注的发票已达 {watches.MAX_ACTIVE_PER_IDENTITY} 张上限，请先取消一些再添加。",
            intent="invoice_watch",
            options=[payloads.WATCH_LIST],
        )
    return Reply(
        text=f"好的，我会在接下来 {settings.watch_max_hours:g} 小时内定期帮您查询{watch_label(code, number)}，"
        "查到或状态变化时第一时间通知您。期间请不要重复开具。回复“我的关注”可查看或取消。",
        intent="invoice_watch",
        invoice={"code": code, "number": number} if code else {"number": number},
    )


def show(turn: Turn) -> Reply:
    """The identity's active watches, each with a cancel option."""
    active = watches.list_active(db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id)
    if not active:
        return Reply(text="您目前没有正在关注的发票。查询发票时可以选择“帮我盯着这张发票”。", intent="invoice_watch")
    lines = [f"{i}. {watch_label(w.code or None, w.number)}" for i, w in enumerate(active, 1)]
    options = [Option(f"取消第{i}个"[:20], payloads.make("watch", "cancel", w.id)) for i, w in enumerate(active[:8], 1)]
    options.append(Option("全部取消", payloads.make("watch", "cancel", "all")))
    return Reply(text="您正在关注的发票：\n" + "\n".join(lines), intent="invoice_watch", options=options)


def cancel(turn: Turn, watch_id: int | None) -> Reply:
    """Cancel one watch (or all of them) of this identity."""
    count = watches.cancel(
        db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id, watch_id=watch_id
    )
    text = f"已取消 {count} 个发票关注。" if count else "没有找到要取消的关注，可能已经结束或取消过了。"
    return Reply(text=text, intent="invoice_watch")
