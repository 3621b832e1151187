"""Hand the conversation to a person: open (or add to) its ticket and tell the merchant what happens next."""

from dataclasses import asdict, dataclass
from typing import Any

from core.messages import Reply
from handlers import human
from handlers.turn import Turn
from knowledge import wording
from ticketing import handoff as ticket_handoff


@dataclass(frozen=True)
class Learned:
    """What the bot found out before handing off: told to the merchant, kept in the chat state for the agent."""

    topic: str
    title: str
    note: str
    # (question, the merchant's answer) in the order asked.
    checked: tuple[tuple[str, str], ...] = ()
    # Fixes the bot already suggested.
    suggested: tuple[str, ...] = ()
    # The guide progress behind `checked`: (guide id, step id, chosen label) per answer, for the ticket.
    path: tuple[tuple[str, str, str], ...] = ()

    def summary(self, max_checked: int = 8) -> str:
        """The record as the merchant sees it: what the problem is and the last `max_checked` answers."""
        lines = [f"{self.title}。{self.note}"]
        if self.checked:
            lines.append("排查经过：")
            earlier = len(self.checked) - max_checked
            if earlier > 0:
                lines.append(f"· （之前还有 {earlier} 条）")
            lines += [f"· {question} —— {answer}" for question, answer in self.checked[-max_checked:]]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the chat state (and later the ticket)."""
        data = asdict(self)
        data["checked"] = [list(pair) for pair in self.checked]
        data["suggested"] = list(self.suggested)
        data["path"] = [list(entry) for entry in self.path]
        return data


def wants_person(turn: Turn) -> bool:
    """True when the merchant asks for a person, someone who knows, a manager or a call back, or complains."""
    return wording.wants_person(turn.text)


def start(turn: Turn, learned: Learned | None = None, *, opening: str | None = None) -> Reply:
    """Open (or add to) the conversation's ticket and tell the merchant its number, hours and what was recorded."""
    turn.state.unsure_streak = 0
    if opening is None:
        complaint = "投诉" in turn.text
        opening = "非常抱歉给您带来不便，您的投诉我们会认真处理。" if complaint else "好的，正在为您转接人工客服。"
    if learned is not None:
        turn.state.handoff_note = learned.as_dict()
    ticket_text = _open_ticket(turn, learned)
    turn.state.guide = None  # the ticket has the guide's progress; nothing is left to resume with the bot
    if ticket_text:
        human.acknowledged(turn)
    lines = [opening, ticket_text] if ticket_text else [opening]
    if learned is not None:
        lines.append(f"已为客服记录：{learned.summary()}")
        lines.append("客服接入后会直接看到这些信息，不用重复描述；如有报错截图的文字内容或发票号码，也可以一并发给我。")
    else:
        lines.append("请把问题、报错截图的文字内容或发票号码一并发给我，客服接入后会直接看到，不用重复描述。")
    lines.append("如想结束人工服务，回复“结束”。")
    return Reply(text="\n".join(lines), intent="handoff", topic=learned.topic if learned else None)


def _open_ticket(turn: Turn, learned: Learned | None) -> str | None:
    """Hand the conversation to people: the ticket's number and the business-hours promise."""
    if turn.db_session is None:
        return None
    guide = asdict(turn.state.guide) if turn.state.guide is not None else None
    handoff = ticket_handoff.open_for_handoff(
        db_session=turn.db_session,
        channel=turn.message.channel,
        user_id=turn.message.user_id,
        text=turn.message.text,
        topic=learned.topic if learned else turn.state.last_topic,
        learned=learned.as_dict() if learned else None,
        guide=guide,
        invoice=turn.state.last_invoice or turn.state.pending_invoice,
    )
    return handoff.merchant_text
