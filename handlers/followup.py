"""Staying on the last topic: follow-ups such as "还是不行" or "那专票呢", and the "有帮助吗？" options of FAQ answers.

A follow-up goes on with the last topic: its guide (resumed where it waits, else from its first question), else the
next topic the matcher considered for the question, else an offer of a person. "没解决" does the same and records the
question as unanswered (a "fallback" turn with the question's text, as knowledge/unanswered.py reads them); so does a
typed follow-up that leaves only the offer of a person; one about nothing the bot remembers is a fallback turn.
"""

import re

from core.conversation import outcomes
from core.conversation import service as conversation_service
from core.messages import IncomingMessage, Reply
from core.text import units
from handlers import faq, guide, payloads
from handlers.turn import Turn

MAX_FOLLOWUP_CHARS = 40
MAX_LOST_CHARS = 4  # beyond "还是不行" itself, a message with more says what it is about: the matcher reads it
_STILL = re.compile(
    r"还是不行|还是不可以|还是没用|还是没有用|还是(提示|报错|报|显示|出现|弹出|一样|老样子|不能|开不|登不|查不|打不)|"
    r"(按|照)(你|您)说的|都试(过)?了|试过了|没用(?!过)|没有用(?!过)|不管用|不好使|没效果|没有效果|没解决|还没解决|不行啊|还不行"
)
_THEN = re.compile(r"^(那|那么|那如果|如果是)(.{1,16}?)(呢|怎么办|咋办|怎么弄|怎么处理|怎么开|怎么操作)[?？!！。.]*$")


def is_followup(turn: Turn) -> bool:
    """True when a short message says the last advice did not work (also while a guide's question is open), or asks
    "那…呢", with a last topic to go on."""
    if len(turn.text) > MAX_FOLLOWUP_CHARS:
        return False
    if guide.is_active(turn) or turn.state.last_topic is None:
        return bool(_STILL.search(turn.folded))
    return bool(_STILL.search(turn.folded) or _THEN.match(turn.folded))


def on_followup(turn: Turn) -> Reply | None:
    """Go on with the last topic; None when the message plainly asks about another topic (the matcher answers it)."""
    if guide.is_active(turn):  # "还是不行" before the open question is answered: its answer finds the next thing to try
        return guide.show(turn, lead="明白，问题还在。我们正在排查这个问题，请先回答下面这个问题：")
    result = turn.knowledge.matcher.match(turn.text)
    if turn.state.last_topic is None:  # nothing to go on (the conversation expired): a question of its own, or lost
        said_more = len("".join(units(_STILL.sub(" ", turn.folded)))) > MAX_LOST_CHARS
        return None if result.outcome == "answer" or said_more else lost(turn)
    topic = turn.state.last_topic
    if result.topic is not None and result.topic != topic:
        return None
    then = _THEN.match(turn.folded)
    if then and turn.state.last_question:
        # "那专票呢": the same question about something else; the matcher reads both together.
        related = turn.knowledge.matcher.match(f"{turn.state.last_question} {then.group(2)}")
        if related.topic is not None and related.topic != topic:
            return faq.answer(turn, related.topic, related.confidence, related.choices(), chosen=True)
    reply = go_on(turn, topic)
    if offers_person(reply):  # nothing is left to try: admins see the question as unanswered, as after "没解决"
        record_unanswered(turn, topic)
    return reply


def lost(turn: Turn) -> Reply:
    """ "还是不行" about nothing the bot remembers: ask for the problem again (a fallback turn: admins see it)."""
    return Reply(
        text="抱歉，我没找到您之前问的问题（对话可能已经超时）。请把遇到的问题和系统的报错原文再发给我，"
        "我接着帮您排查；也可以直接转人工客服。",
        intent="fallback",
        options=[payloads.HANDOFF, payloads.FAQ_MENU],
    )


def on_option(turn: Turn) -> Reply | None:
    """feedback:yes:<topic> thanks; feedback:no:<topic> goes on with the topic and records it as unanswered."""
    verb, topic = turn.payload.verb, payloads.SEPARATOR.join(turn.payload.args[1:])
    if topic not in turn.knowledge.entries:
        return None
    if verb == "yes":
        turn.state.last_candidates = []
        return Reply(text="太好了，很高兴能帮到您！还有其他问题可以直接问我。", intent="answer", topic=topic)
    if verb != "no":
        return None
    record_unanswered(turn, topic)
    return go_on(turn, topic, lead="抱歉没能帮您解决。")


def go_on(turn: Turn, topic: str, lead: str = "") -> Reply:
    """The next thing to try about `topic`: its guide, the next candidate topic, else an offer of a person."""
    topic_guide = turn.guides.get(topic)
    if topic_guide is not None:
        found = guide.current(turn)
        if found is not None and found[0].id == topic:
            return guide.resume(turn)
        opening = f"{lead}我们一步步排查一下：{topic_guide.title}。"
        return guide.start(turn, topic_guide, confidence=1.0, lead=opening)
    tried = {topic}
    following = [t for t in turn.state.last_candidates if t not in tried and t in turn.knowledge.entries]
    if following:
        nxt = following[0]
        question, recorded = turn.state.last_question, turn.state.recorded_question
        reply = faq.answer(turn, nxt, None, [nxt, *following[1:]], chosen=True)
        turn.state.last_candidates = following[1:]
        turn.state.last_question, turn.state.recorded_question = question, recorded
        entry = turn.knowledge.entries[nxt]
        reply.text = f"{lead}也可能是另一种情况——{entry.question}\n\n{reply.text}"
        return reply
    turn.state.last_candidates = []
    entry = turn.knowledge.entries.get(topic)
    about = f"关于“{entry.question}”，" if entry else ""
    return Reply(
        text=f"{lead}{about}我能提供的办法就是这些了。建议转人工客服，客服会接着帮您排查；也可以换个说法，把报错原文发给我。",
        intent="answer",
        topic=topic,
        options=[payloads.HANDOFF, payloads.FAQ_MENU],
    )


def offers_person(reply: Reply) -> bool:
    """True when the reply has nothing more to try and offers a person instead."""
    return any(option.payload == payloads.HANDOFF.payload for option in reply.options)


def record_unanswered(turn: Turn, topic: str) -> None:
    """Record the question an answer did not solve as a fallback turn, so that it shows among unanswered questions
    (once, however many times the merchant says it did not help)."""
    question = turn.state.last_question
    if not turn.record or turn.db_session is None or not question or turn.state.recorded_question == question:
        return
    turn.state.recorded_question = question
    message = IncomingMessage(channel=turn.message.channel, user_id=turn.message.user_id, text=question)
    reply = Reply(text=outcomes.not_helped_text(topic), intent="fallback", topic=topic)
    conversation_service.record_turn(db_session=turn.db_session, message=message, reply=reply)
