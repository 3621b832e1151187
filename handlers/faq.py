"""FAQ answers from the matcher: a confident match is answered (or its guide started), a close call offers the
nearest topics as numbered choices, a subject the bot does not cover is named as such, a miss falls back."""

from core import metrics
from core.messages import Decision, Option, Reply
from core.text import error_codes
from handlers import fallback, guide, outside, payloads
from handlers.turn import Turn
from knowledge.matcher import MatchResult

HELPED, NOT_SOLVED = "有帮助", "没解决"


def match(turn: Turn) -> Reply:
    """Answer from the matcher: the topic, a choice among the nearest ones, or the fallback; the reply carries how the
    matcher decided."""
    with metrics.MATCH_SECONDS.time():
        result = turn.knowledge.matcher.match(turn.text)
    reply = decide(turn, result)
    reply.decision = Decision(
        outcome=result.outcome,
        gate=result.gate,
        threshold=result.threshold,
        score=result.score,
        margin=result.margin,
        reranked=result.reranked,
        candidates=tuple((c.topic, c.score) for c in result.candidates),
    )
    return reply


def decide(turn: Turn, result: MatchResult) -> Reply:
    """The reply the matcher's outcome leads to."""
    if result.outcome == "answer":
        return answer(turn, result.candidates[0].topic, result.confidence, result.choices())
    if result.outcome == "clarify":
        return clarify(turn, result)
    if result.outcome == "out_of_scope" and result.outside is not None:
        return outside.reply(turn, result.outside, confidence=result.confidence)
    return fallback.miss(turn, confidence=result.confidence, candidates=result.choices(), in_domain=in_domain(turn))


def in_domain(turn: Turn) -> bool:
    """True when the message mentions an invoice or tax term or an error code (a miss there may need a person)."""
    matcher = turn.knowledge.matcher
    return bool(error_codes(turn.folded)) or matcher.lexicon.is_domain("".join(matcher.prepare(turn.text)))


def on_option(turn: Turn) -> Reply | None:
    """faq:<topic>: answer the chosen topic; None when it is no longer in the knowledge base."""
    topic = payloads.SEPARATOR.join(turn.payload.args)
    if topic not in turn.knowledge.entries:
        return None
    return answer(turn, topic, 1.0, chosen=True)


def answer(
    turn: Turn, topic: str, confidence: float | None, candidates: list[str] | None = None, *, chosen: bool = False
) -> Reply:
    """Answer a topic: start its guide when it has one, else give the FAQ answer."""
    topic_guide = turn.guides.get(topic)
    if topic_guide is None:
        return entry_answer(turn, topic, confidence, candidates)
    in_progress = guide.current(turn)
    if in_progress is None or chosen:
        return guide.start(turn, topic_guide, confidence=confidence, candidates=candidates or [topic])
    if in_progress[0].id == topic:
        # The merchant repeats the problem being worked on: ask the current question again.
        asked = guide.show(turn, lead="我们正在排查这个问题，请先回答下面这个问题：")
        return asked or guide.start(turn, topic_guide, confidence=confidence, candidates=candidates or [topic])
    # Another guided topic: answer it, keep the current guide, and offer to go through the other one.
    reply = entry_answer(turn, topic, confidence, candidates, helpful=False)
    reply.options = [*reply.options, guide.start_option(topic_guide)]
    return reply


def entry_answer(
    turn: Turn, topic: str, confidence: float | None, candidates: list[str] | None = None, *, helpful: bool = True
) -> Reply:
    """Answer with one FAQ entry, asking "有帮助吗？" by its options (unless `helpful` is False); remember the question
    and the other candidate topics for a follow-up."""
    entry = turn.knowledge.entries[topic]
    typed = turn.payload is None
    if typed:
        turn.state.last_question, turn.state.recorded_question = turn.text, None
    considered = candidates if typed and candidates is not None else turn.state.last_candidates
    turn.state.last_candidates = [t for t in considered if t != topic]
    turn.state.last_topic = topic
    turn.state.unsure_streak = 0
    return Reply(
        text=entry.answer,
        intent="answer",
        topic=topic,
        confidence=confidence,
        candidates=candidates or [topic],
        options=helpful_options(topic) if helpful else [],
    )


def helpful_options(topic: str) -> list[Option]:
    """ "有帮助" / "没解决" under an FAQ answer about `topic` (no extra message)."""
    return [
        Option(HELPED, payloads.make("feedback", "yes", topic)),
        Option(NOT_SOLVED, payloads.make("feedback", "no", topic)),
    ]


def clarify(turn: Turn, result: MatchResult) -> Reply:
    """Offer the closest topics as numbered choices."""
    choices = result.choices()
    turn.state.last_question, turn.state.last_candidates = turn.text, choices
    options = [Option(turn.knowledge.entries[t].question, payloads.make("faq", t)) for t in choices]
    options.append(Option("都不是，转人工客服", payloads.HANDOFF.payload))
    return Reply(
        text="我不太确定您问的是哪一个，请选择最接近的问题：",
        intent="clarify",
        options=options,
        confidence=result.confidence,
        candidates=choices,
    )
