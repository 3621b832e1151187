"""Every intent in one place: the rules in the order they are tried, and what each option payload does.

The first rule whose `when` holds and whose handler answers (not None) gives the reply. Adding an intent is one module
with a `turn -> Reply | None` handler (and a predicate when it needs one) and one line in RULES; an option it offers
is one line in OPTIONS (payload grammar: handlers/payloads.py).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.messages import Reply
from handlers import (
    binding,
    choices,
    fallback,
    faq,
    followup,
    greeting,
    guide,
    handoff,
    human,
    invoice,
    payloads,
    smalltalk,
    throttle,
    watch,
)
from handlers.turn import Handler, Turn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """When a handler is asked; `final` replies go out as they are (no guide-resume offer, no incident notice)."""

    when: Callable[[Turn], bool]
    handler: Handler
    final: bool = False


def always(turn: Turn) -> bool:
    """Every turn: the handler itself decides (by returning None) whether the message is for it."""
    return True


def has_pending(turn: Turn) -> bool:
    """True when the last reply offered numbered options."""
    return bool(turn.state.pending)


def on_pending_choice(turn: Turn) -> Reply | None:
    """The option of the last reply that the message picks (by number or words); None when it picks none."""
    payload = choices.choose(turn.text, turn.state.pending)
    return None if payload is None else follow(turn, payload)


RULES: tuple[Rule, ...] = (  # first match wins
    Rule(throttle.over_limit, throttle.pause, final=True),  # before the relay: a flood never reaches a ticket
    Rule(always, human.relay, final=True),  # a person has the conversation
    Rule(smalltalk.is_reaction, smalltalk.reply, final=True),  # 👍 is a reaction, not an empty message
    Rule(fallback.is_empty, fallback.empty),
    Rule(guide.is_active, guide.on_answer),
    Rule(has_pending, on_pending_choice),
    Rule(guide.is_paused, guide.on_command),
    Rule(handoff.wants_person, guide.hand_off),
    Rule(smalltalk.is_small_talk, smalltalk.reply, final=True),  # thanks, ok, bye, haha, "你是谁"
    Rule(always, binding.on_text),
    Rule(watch.wants_list, watch.show),
    Rule(invoice.names_invoice, invoice.on_number),
    Rule(greeting.is_greeting, greeting.welcome),
    Rule(invoice.wants_lookup, invoice.ask_number),
    Rule(followup.is_followup, followup.on_followup),  # "还是不行", "那专票呢": stay on the last topic
    Rule(always, faq.match),
)

OPTIONS: dict[str, Handler] = {  # payload "kind:verb", else "kind" → its handler (which reads turn.payload)
    "faq": faq.on_option,
    "guide": guide.on_option,
    "feedback": followup.on_option,
    "binding": binding.on_option,
    "watch": watch.on_option,
    "intent:handoff": guide.hand_off,
    "intent:invoice_lookup": invoice.ask_number,
    "intent:bind": binding.bind,
    "menu:faq": greeting.faq_menu,
}


def dispatch(turn: Turn) -> tuple[Reply, Rule]:
    """The reply to a turn and the rule that gave it."""
    for rule in RULES:
        if rule.when(turn):
            reply = rule.handler(turn)
            if reply is not None:
                return reply, rule
    raise LookupError("no rule answered")  # the last rule always answers


def follow(turn: Turn, payload: str) -> Reply:
    """Carry out a chosen option; a stale or unknown one gets the greeting menu."""
    turn.payload = payloads.parse(payload)
    handler = OPTIONS.get(f"{turn.payload.kind}:{turn.payload.verb}") or OPTIONS.get(turn.payload.kind)
    reply = handler(turn) if handler is not None else None
    if reply is None:
        log.info("stale option %s", payload)
        return greeting.welcome(turn)
    return reply
