"""Recording and reading conversation turns."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.conversation.models import ConversationTurn
from core.messages import IncomingMessage, Reply


def record_turn(*, db_session: Session, message: IncomingMessage, reply: Reply) -> ConversationTurn:
    """Store one message and the reply to it."""
    turn = ConversationTurn(
        channel=message.channel,
        user_id=storable(message.user_id),
        text=storable(message.text),
        intent=reply.intent,
        topic=reply.topic,
        confidence=reply.confidence,
        reply=reply.render_text(),
    )
    db_session.add(turn)  # written at commit, so a SQLite write lock is held only briefly
    return turn


def storable(text: str) -> str:
    """Text every database accepts: NUL (rejected by PostgreSQL) becomes U+FFFD."""
    return text.replace("\x00", "\ufffd")


def get_history(*, db_session: Session, channel: str, user_id: str, limit: int = 50) -> list[ConversationTurn]:
    """The latest turns of one conversation, oldest first."""
    query = (
        select(ConversationTurn)
        .where(ConversationTurn.channel == channel, ConversationTurn.user_id == storable(user_id))
        .order_by(ConversationTurn.id.desc())
        .limit(limit)
    )
    return list(reversed(list(db_session.scalars(query))))
