"""What every handler receives."""

from dataclasses import dataclass

from bot.messages import IncomingMessage
from bot.session import SessionState
from knowledge.live import KnowledgeSnapshot


@dataclass
class Turn:
    """One incoming message with the conversation state and the knowledge it is answered from."""

    message: IncomingMessage
    text: str
    session: SessionState
    knowledge: KnowledgeSnapshot
