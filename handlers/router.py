"""The router: loads the conversation, decides the intent, calls its handler, saves and records the turn."""

import logging
import time
from collections.abc import Collection, Mapping

from rapidfuzz import fuzz, process
from sqlalchemy.orm import Session

from core import identifiers, metrics
from core.conversation import service as conversation_service
from core.conversation import state as sessions
from core.messages import IncomingMessage, Reply
from core.store import Store, best_effort
from core.text import clean, fold, units
from handlers import binding, fallback, faq, greeting, guide, handoff, invoice, watch
from handlers.turn import Turn
from invoices.backend import InvoiceBackend
from knowledge.guides import Guide, get_guides
from knowledge.live import LiveKnowledge
from ticketing import flows as ticket_flows
from ticketing import incidents
from ticketing import service as ticket_service

log = logging.getLogger(__name__)

THROTTLED_TEXT = "您发送消息的速度有点快，我需要稍作休息。请一分钟后再发，您刚才的消息已经记录下来了。"
# Misses in a row after which the merchant is handed to a person.
UNSURE_BEFORE_HANDOFF = 2
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
        guides: Mapping[str, Guide] | None = None,
        invoices: InvoiceBackend | None = None,
        rate_limit: int = 0,
        incident_topics: Collection[str] = (),
    ):
        self.store = store
        self.knowledge = knowledge
        self.session_ttl = session_ttl
        self.record = record
        self.max_chars = max_chars
        self.guides = get_guides() if guides is None else guides
        self.invoices = invoices
        self.rate_limit = rate_limit
        self.incident_topics = frozenset(incident_topics)
        # Pasted on-screen messages the guides cover: they are questions, never an invoice lookup.
        self._error_messages = tuple({fold(e) for g in self.guides.values() for e in g.errors})

    def handle(self, message: IncomingMessage, *, db_session: Session) -> Reply:
        """Answer a message and remember the turn."""
        state = sessions.load(store=self.store, channel=message.channel, user_id=message.user_id)
        turn = Turn(
            message=message,
            text=clean(message.text)[: self.max_chars],
            session=state,
            knowledge=self.knowledge.current(db_session=db_session),
            db_session=db_session,
            store=self.store,
            invoices=self.invoices,
        )
        reply = self.with_people(turn) or self.throttled(turn) or self.route(turn)
        metrics.MESSAGES.labels(message.channel, reply.intent).inc()
        state.pending = [{"label": o.label, "payload": o.payload} for o in reply.options]
        state.turns += 1
        sessions.save(
            store=self.store, channel=message.channel, user_id=message.user_id, state=state, ttl=self.session_ttl
        )
        if self.record:
            conversation_service.record_turn(db_session=db_session, message=message, reply=reply)
        return reply

    def throttled(self, turn: Turn) -> Reply | None:
        """A polite pause when one identity sends more than `rate_limit` messages a minute (shared by all workers)."""
        if not self.rate_limit:
            return None
        key = f"rate:{turn.message.channel}:{turn.message.user_id}:{int(time.time() // 60)}"
        count = best_effort(lambda: self.store.incr(key, ttl=120), 0, what="rate limit")
        if count <= self.rate_limit:
            return None
        metrics.THROTTLED.inc()
        return Reply(text=THROTTLED_TEXT, intent="fallback")

    def with_people(self, turn: Turn) -> Reply | None:
        """A conversation a person is handling: the message goes to its ticket and the bot stays silent, except to
        end the human conversation; a resolved ticket takes the rating. None when the bot should answer."""
        outcome = ticket_flows.route_merchant_message(
            db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id, text=turn.text
        )
        if outcome.action == "none":
            return None
        if outcome.action == "appended" and handoff.wants_bot(turn.text):
            ticket_service.hand_back_to_bot(
                db_session=turn.db_session, ticket_id=outcome.ticket.id, notify=False, reason="merchant_ended"
            )
            reply = greeting.handle(turn)
            reply.text = "已结束人工服务，您的工单已关闭。" + reply.text
            return reply
        return Reply(text=outcome.reply or "", intent="human")

    def route(self, turn: Turn) -> Reply:
        """Pick the handler for a turn; a guide that the reply leaves is paused and offered for resuming; an open
        incident's notice leads the answers about its topic."""
        reply = guide.offer_resume(turn, self.guides, self.decide(turn))
        if reply.topic in self.incident_topics and reply.intent in ("answer", "guide"):
            notice = incidents.notice_for(db_session=turn.db_session, topic=reply.topic)
            if notice:
                reply.text = f"{notice}\n\n{reply.text}"
        return reply

    def decide(self, turn: Turn) -> Reply:
        """The reply to a turn: guide answers first, then choices, handoff, invoices, greetings, the FAQ matcher."""
        text = turn.text
        if not units(fold(text)):
            return fallback.empty(turn)
        if guide.is_active(turn, self.guides):
            reply = self.in_guide(turn)
            if reply is not None:
                return reply
        if turn.session.pending:
            payload = choose(text, turn.session.pending)
            if payload is not None:
                return self.follow(turn, payload)
        if guide.is_paused(turn, self.guides):
            steer = guide.command(text)
            reply = self.steer(turn, "resume" if steer == "back" else steer)
            if reply is not None:
                return reply
        if handoff.wants_human(text):
            return guide.hand_off(turn, self.guides)
        reply = self.account(turn)
        if reply is not None:
            return reply
        invoice_scan = identifiers.scan(text)
        if invoice_scan is not None and (invoice_scan.ref is not None or _mentions_invoice(text)):
            return invoice.handle(turn, invoice_scan)
        if greeting.is_greeting(text):
            return greeting.handle(turn)
        if invoice.wants_lookup(text) and not self.names_error(text):
            return invoice.handle(turn, None)
        with metrics.MATCH_SECONDS.time():
            result = turn.knowledge.matcher.match(text)
        if result.outcome == "answer":
            return self.answer(turn, result.candidates[0].topic, result.confidence, result.choices())
        if result.outcome == "clarify":
            return faq.clarify(turn, result)
        reply = fallback.handle(turn, confidence=result.confidence, candidates=result.choices())
        if turn.session.unsure_streak >= UNSURE_BEFORE_HANDOFF:
            return handoff.handle(turn, opening="抱歉，我连续两次没能理解您的问题，已为您转接人工客服。")
        return reply

    def account(self, turn: Turn) -> Reply | None:
        """Binding, unbinding and invoice watches asked for in words; None for anything else."""
        text, awaiting = turn.text, turn.session.awaiting
        turn.session.awaiting = None
        if binding.wants_unbind(text):
            return binding.confirm_unbind(turn)
        if binding.wants_status(text):
            return binding.status(turn)
        if binding.wants_bind(text) or (awaiting == binding.AWAITING and binding.looks_like_details(text)):
            return self.bind(turn)
        if watch.wants_list(text):
            return watch.show(turn)
        return None

    def bind(self, turn: Turn) -> Reply:
        """Bind this identity; then look up the invoice the merchant asked about before binding."""
        reply = binding.start(turn)
        pending = turn.session.pending_invoice
        if not pending or not binding.is_bound(turn):
            return reply
        turn.session.pending_invoice = None
        status = invoice.status(turn, identifiers.InvoiceRef(number=pending.get("number"), code=pending.get("code")))
        status.text = f"{reply.text}\n\n{status.text}"
        return status

    def in_guide(self, turn: Turn) -> Reply | None:
        """Handle a message that answers the guide's question or steers the guide; None for anything else."""
        text = turn.text
        payload = guide.pick(turn, self.guides, text)
        if payload is not None:
            return self.follow(turn, payload)
        reply = self.steer(turn, guide.command(text))
        if reply is not None:
            return reply
        if handoff.wants_human(text):
            return guide.hand_off(turn, self.guides)
        payload = guide.pick_polar(turn, self.guides, text)
        if payload is not None:
            return self.follow(turn, payload)
        if guide.looks_like_answer(text):
            count = len(guide.current_options(turn, self.guides))
            return guide.show(turn, self.guides, lead=f"请回复 1-{count} 的数字，选择最符合的一项：")
        if greeting.is_greeting(text):
            return guide.show(turn, self.guides)
        return None

    def steer(self, turn: Turn, command: str | None) -> Reply | None:
        """Carry out a typed guide command (返回, 重来, 退出, 继续); None when there is none or no guide."""
        if command == "back":
            return guide.back(turn, self.guides)
        if command == "restart":
            return guide.restart(turn, self.guides)
        if command == "exit":
            return guide.leave(turn, self.guides)
        if command == "resume" and guide.current(turn, self.guides) is not None:
            return guide.resume(turn, self.guides)
        return None

    def answer(
        self,
        turn: Turn,
        topic: str,
        confidence: float | None,
        candidates: list[str] | None = None,
        *,
        chosen: bool = False,
    ) -> Reply:
        """Answer a matched topic: start its guide when it has one, else give the FAQ answer."""
        topic_guide = self.guides.get(topic)
        if topic_guide is None:
            return faq.answer(turn, topic, confidence, candidates)
        in_progress = guide.current(turn, self.guides)
        if in_progress is None or chosen:
            return guide.start(turn, topic_guide, confidence=confidence, candidates=candidates or [topic])
        if in_progress[0].id == topic:
            # The merchant repeats the problem being worked on: ask the current question again.
            asked = guide.show(turn, self.guides, lead="我们正在排查这个问题，请先回答下面这个问题：")
            return asked or guide.start(turn, topic_guide, confidence=confidence, candidates=candidates or [topic])
        # Another guided topic: answer it, keep the current guide, and offer to go through the other one.
        reply = faq.answer(turn, topic, confidence, candidates)
        reply.options = [*reply.options, guide.start_option(topic_guide)]
        return reply

    def follow(self, turn: Turn, payload: str) -> Reply:
        """Carry out a chosen option."""
        kind, _, value = payload.partition(":")
        if kind == "guide":
            return self.follow_guide(turn, value)
        if kind == "faq" and value in turn.knowledge.entries:
            return self.answer(turn, value, 1.0, chosen=True)
        if payload == "intent:handoff":
            return guide.hand_off(turn, self.guides)
        if payload == "intent:invoice_lookup":
            return invoice.handle(turn, None)
        if payload == "menu:faq":
            return greeting.faq_menu(turn)
        if kind in ("binding", "watch") or payload == "intent:bind":
            return self.follow_account(turn, payload)
        log.info("stale option %s", payload)
        return greeting.handle(turn)

    def follow_account(self, turn: Turn, payload: str) -> Reply:
        """Carry out a binding or watch option: intent:bind, binding:unbind[:yes], binding:keep, watch:…."""
        if payload == "intent:bind":
            return self.bind(turn)
        if payload == "binding:unbind":
            return binding.confirm_unbind(turn)
        if payload == "binding:unbind:yes":
            return binding.unbind(turn)
        if payload == "binding:keep":
            return binding.keep(turn)
        if payload == "watch:list":
            return watch.show(turn)
        parts = payload.split(":")
        if parts[:2] == ["watch", "add"] and len(parts) == 4 and parts[3].isdigit():
            return watch.add(turn, parts[2] or None, parts[3])
        if parts[:2] == ["watch", "cancel"] and len(parts) == 3:
            return watch.cancel(turn, None if parts[2] == "all" else int(parts[2]) if parts[2].isdigit() else -1)
        log.info("stale option %s", payload)
        return greeting.handle(turn)

    def follow_guide(self, turn: Turn, value: str) -> Reply:
        """Carry out a guide option: "resume", "done:yes|no", "start:<guide>" or "<step>:<number>"."""
        head, _, tail = value.partition(":")
        if head == "resume":
            return guide.resume(turn, self.guides)
        if head == "done":
            return guide.feedback(turn, self.guides, solved=tail == "yes")
        if head == "start" and tail in self.guides:
            return guide.start(turn, self.guides[tail], confidence=1.0)
        if tail.isdigit():
            return guide.choose(turn, self.guides, head, int(tail))
        log.info("stale guide option %s", value)
        return guide.resume(turn, self.guides)

    def names_error(self, text: str) -> bool:
        """True when the message contains an on-screen message a guide covers (e.g. "查无此票")."""
        folded = fold(text)
        return any(message in folded for message in self._error_messages)


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
