"""The router: loads the conversation's chat state, asks the registry for the reply, saves and records the turn."""

from collections.abc import Collection, Mapping

from sqlalchemy.orm import Session

from core import metrics
from core.conversation import service as conversation_service
from core.conversation import state as chat_state
from core.messages import IncomingMessage, Reply
from core.settings import get_settings
from core.store import Store, get_store
from core.text import clean
from handlers import guide, registry
from handlers.turn import Turn
from invoices.backend import InvoiceBackend
from invoices.factory import get_invoice_backend
from knowledge.guides import Guide, get_guides
from knowledge.live import LiveKnowledge, get_live_knowledge
from ticketing import incidents

# Replies that show the bot understood the turn: the next miss is the first again.
UNDERSTOOD = frozenset(
    {"answer", "guide", "invoice_lookup", "invoice_watch", "binding", "handoff", "greeting", "smalltalk"}
)


class Router:
    """Turns one incoming message into one reply."""

    def __init__(
        self,
        *,
        store: Store,
        knowledge: LiveKnowledge,
        state_ttl: float = 1800,
        record: bool = True,
        max_chars: int = 2000,
        guides: Mapping[str, Guide] | None = None,
        invoices: InvoiceBackend | None = None,
        rate_limit: int = 0,
        incident_topics: Collection[str] = (),
    ):
        self.store = store
        self.knowledge = knowledge
        self.state_ttl = state_ttl
        self.record = record
        self.max_chars = max_chars
        self.guides = get_guides() if guides is None else guides
        self.invoices = invoices
        self.rate_limit = rate_limit
        self.incident_topics = frozenset(incident_topics)

    def handle(self, message: IncomingMessage, *, db_session: Session) -> Reply:
        """Answer a message and remember the turn."""
        state = chat_state.load(store=self.store, channel=message.channel, user_id=message.user_id)
        turn = Turn(
            message=message,
            text=clean(message.text)[: self.max_chars],
            state=state,
            knowledge=self.knowledge.current(db_session=db_session),
            db_session=db_session,
            store=self.store,
            invoices=self.invoices,
            guides=self.guides,
            rate_limit=self.rate_limit,
            record=self.record,
        )
        reply, rule = registry.dispatch(turn)
        if reply.intent in UNDERSTOOD:
            state.unsure_streak = 0
        if not rule.final:
            reply = self.aftercare(turn, reply)
        metrics.MESSAGES.labels(message.channel, reply.intent).inc()
        state.pending = [{"label": o.label, "payload": o.payload} for o in reply.options]
        state.turns += 1
        chat_state.save(
            store=self.store, channel=message.channel, user_id=message.user_id, state=state, ttl=self.state_ttl
        )
        if self.record:
            conversation_service.record_turn(db_session=db_session, message=message, reply=reply)
        return reply

    def aftercare(self, turn: Turn, reply: Reply) -> Reply:
        """A guide that the reply leaves is paused and offered for resuming; an open incident's notice leads the
        answers about its topic."""
        if reply.intent != "handoff":  # a person takes over: no option would answer anything
            reply = guide.offer_resume(turn, reply)
        if reply.topic in self.incident_topics and reply.intent in ("answer", "guide"):
            notice = incidents.notice_for(db_session=turn.db_session, topic=reply.topic)
            if notice:
                reply.text = f"{notice}\n\n{reply.text}"
        return reply


def make_router(*, store: Store | None = None, record: bool = True) -> Router:
    """A router wired to the configured store and the live knowledge base."""
    settings = get_settings()
    return Router(
        store=store or get_store(),
        knowledge=get_live_knowledge(),
        state_ttl=settings.session_ttl_seconds,
        record=record,
        max_chars=settings.max_message_chars,
        invoices=get_invoice_backend(),
        rate_limit=settings.inbound_messages_per_minute,
        incident_topics=settings.incident_topics,
    )
