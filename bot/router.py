"""The router: loads the conversation, decides the intent, calls its handler, saves and records the turn."""

import logging

from rapidfuzz import fuzz, process
from sqlalchemy.orm import Session

from bot import session as sessions
from bot.conversation import service as conversation_service
from bot.messages import IncomingMessage, Reply
from bot.store import Store
from handlers import fallback, faq, greeting, handoff, invoice
from handlers.base import Turn
from knowledge import identifiers
from knowledge.live import LiveKnowledge
from knowledge.text import clean, fold, units

log = logging.getLogger(__name__)

# How close typed words must be to an option's label (rapidfuzz ratio, 0-100) to pick it.
CHOICE_SIMILARITY = 80


class Router:
    """Turns one incoming message into one reply."""

    def __init__(
        self,
        *,
        store: Store,
        knowledge: LiveKnowledge,
        session_ttl: float = 1800,
        record: bool = True,
        max_chars: int = 2000,
    ):
        self.store = store
        self.knowledge = knowledge
        self.session_ttl = session_ttl
        self.record = record
        self.max_chars = max_chars

    def handle(self, message: IncomingMessage, *, db_session: Session) -> Reply:
        """Answer a message and remember the turn."""
        state = sessions.load(store=self.store, channel=message.channel, user_id=message.user_id)
        turn = Turn(
            message=message,
            text=clean(message.text)[: self.max_chars],
            session=state,
            knowledge=self.knowledge.current(db_session=db_session),
        )
        reply = self.route(turn)
        state.pending = [{"label": o.label, "payload": o.payload} for o in reply.options]
        state.turns += 1
        sessions.save(
            store=self.store, channel=message.channel, user_id=message.user_id, state=state, ttl=self.session_ttl
        )
        if self.record:
            conversation_service.record_turn(db_session=db_session, message=message, reply=reply)
        return reply

    def route(self, turn: Turn) -> Reply:
        """Pick the handler for a turn."""
        text = turn.text
        if not units(fold(text)):
            return fallback.empty(turn)
        if turn.session.pending:
            payload = choose(text, turn.session.pending)
            if payload is not None:
                return self.follow(turn, payload)
        if handoff.wants_human(text):
            return handoff.handle(turn)
        invoice_scan = identifiers.scan(text)
        if invoice_scan is not None and (invoice_scan.ref is not None or _mentions_invoice(text)):
            return invoice.handle(turn, invoice_scan)
        if greeting.is_greeting(text):
            return greeting.handle(turn)
        if invoice.wants_lookup(text):
            return invoice.handle(turn, None)
        result = turn.knowledge.matcher.match(text)
        if result.outcome == "answer":
            return faq.answer(turn, result.candidates[0].topic, result.confidence, result.choices())
        if result.outcome == "clarify":
            return faq.clarify(turn, result)
        return fallback.handle(turn, confidence=result.confidence, candidates=result.choices())

    def follow(self, turn: Turn, payload: str) -> Reply:
        """Carry out a chosen option."""
        kind, _, value = payload.partition(":")
        if kind == "faq" and value in turn.knowledge.entries:
            return faq.answer(turn, value, 1.0)
        if payload == "intent:handoff":
            return handoff.handle(turn)
        if payload == "intent:invoice_lookup":
            return invoice.handle(turn, None)
        if payload == "menu:faq":
            return greeting.faq_menu(turn)
        log.info("stale option %s", payload)
        return greeting.handle(turn)


def choose(text: str, pending: list[dict[str, str]]) -> str | None:
    """The payload of the option a reply picks: by number ("2", "第二个") or by its words; None otherwise."""
    picked = faq.parse_choice(text, len(pending))
    if picked is not None:
        return pending[picked]["payload"]
    labels = [fold(option["label"]) for option in pending]
    best = process.extractOne(fold(text), labels, scorer=fuzz.ratio, score_cutoff=CHOICE_SIMILARITY)
    return pending[best[2]]["payload"] if best else None


def _mentions_invoice(text: str) -> bool:
    return any(word in text for word in ("发票", "票号", "号码", "代码", "查询", "查一下"))
