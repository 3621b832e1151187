"""What every handler receives."""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.conversation.state import SessionState
from core.messages import IncomingMessage
from core.store import Store
from invoices.backend import InvoiceBackend
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
