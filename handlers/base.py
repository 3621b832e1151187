"""What every handler receives."""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.invoices.backend import InvoiceBackend
from bot.messages import IncomingMessage
from bot.session import SessionState
from bot.store import Store
from knowledge.live import KnowledgeSnapshot


@dataclass
class Turn:
    """One incoming message with the conversation state and the knowledge it is answered from."""

    message: IncomingMessage
    text: str
    session: SessionState
    knowledge: KnowledgeSnapshot
    db_session: Session | None = None
    store: Store | None = None
    invoices: InvoiceBackend | None = None
