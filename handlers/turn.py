"""What every handler receives, and the one shape every handler has: `turn -> Reply | None`."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.orm import Session

from core import identifiers
from core.conversation.state import ChatState
from core.messages import IncomingMessage, Reply
from core.store import Store
from core.text import fold
from handlers.payloads import Payload
from invoices.backend import InvoiceBackend
from knowledge.guides import Guide
from knowledge.live import KnowledgeSnapshot


@dataclass
class Turn:
    """One incoming message with the conversation's chat state and what it is answered from."""

    message: IncomingMessage
    text: str  # cleaned and cut to the router's limit
    state: ChatState
    knowledge: KnowledgeSnapshot
    db_session: Session | None = None
    store: Store | None = None
    invoices: InvoiceBackend | None = None
    guides: Mapping[str, Guide] = field(default_factory=dict)
    rate_limit: int = 0  # messages a minute per identity; 0: no limit
    payload: Payload | None = None  # the option being carried out, for option handlers
    record: bool = True  # False: the router records no turns (triage, some tests)

    @cached_property
    def folded(self) -> str:
        """The text cleaned and lower-cased, as the predicates compare it."""
        return fold(self.text)

    @cached_property
    def han(self) -> str:
        """The text with typed pinyin ("fapiao zenme zuofei") read back as the knowledge base's Han words."""
        return self.knowledge.matcher.pinyin.convert(self.text)

    @cached_property
    def scan(self) -> identifiers.InvoiceScan | None:
        """The invoice number the text carries, right or wrong; None when there is none."""
        return identifiers.scan(self.text)


# A handler answers the turn, or returns None when the message is not for it (the next rule is tried).
Handler = Callable[[Turn], Reply | None]
