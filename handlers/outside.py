"""Questions about a subject the bot does not cover (other taxes, social insurance, registration, bookkeeping): say
so plainly, say where to ask, offer a person. The turn's intent, out_of_scope, lists it among the unanswered
questions for admins; it is not a miss, so it never opens a ticket by itself."""

from core.messages import Reply
from handlers import payloads
from handlers.turn import Turn
from knowledge.outside import OUT_OF_SCOPE, load_subjects


def reply(turn: Turn, subject_id: str, *, confidence: float | None = None) -> Reply:
    """Tell the merchant the subject is outside what the bot answers, and where to ask instead."""
    subject = load_subjects().get(subject_id)
    name = f"“{subject.name}”方面的" if subject else "这类"
    where = subject.where if subject else "可以拨打纳税服务热线12366咨询。"
    turn.state.last_question = turn.text
    return Reply(
        text=(
            f"您问的是{name}问题，这不在我能解答的范围内（我只解答发票开具、作废、红冲、查验、抵扣、登录和税控设备等问题），"
            f"为避免误导，就不随便回答了。{where}如需我们的客服协助，可以回复“转人工”。"
        ),
        intent=OUT_OF_SCOPE,
        topic=subject_id,
        confidence=confidence,
        options=[payloads.HANDOFF, payloads.FAQ_MENU],
    )
