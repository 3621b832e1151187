""" "Try a question": the reply a merchant would get, through the same router path, and why the bot chose it.

The message is the first of a fresh conversation (a throwaway chat state, an identity of its own) on a router that
records no turns, in a database session that is rolled back: nothing reaches the analytics, the unanswered list or
the tickets.
"""

import uuid
from typing import Any

from sqlalchemy.orm import Session

from core.database import get_sessionmaker
from core.messages import Decision, IncomingMessage, Reply
from core.settings import get_settings
from core.store import MemoryStore
from handlers.router import make_router
from knowledge.guides import get_guides
from knowledge.live import KnowledgeSnapshot, get_live_knowledge
from knowledge.matcher import Policy
from knowledge.outside import load_subjects

CHANNEL = "console_try"
INTENT_LABELS = {
    "answer": "直接回答",
    "guide": "排查指南",
    "clarify": "请商户选择",
    "invoice_lookup": "查询发票",
    "invoice_watch": "关注发票",
    "binding": "绑定企业",
    "handoff": "转人工",
    "human": "人工客服处理中",
    "greeting": "问候",
    "smalltalk": "闲聊",
    "fallback": "兜底回复",
    "out_of_scope": "超出范围",
    "throttled": "发送过快（暂停回复）",
}
OUTCOME_LABELS = {
    "answer": "直接回答",
    "clarify": "请商户在几个问题中选择",
    "out_of_scope": "超出解答范围",
    "not_sure": "无法回答（兜底回复，可转人工）",
}
GATE_LABELS = {
    "answer_at": "直接回答阈值",
    "clarify_at": "请选择阈值",
    "outside_at": "超出范围阈值",
    "min_score": "直接回答的最低分数",
    "generic": "笼统问题检查",
    "aspect": "问的方面与条目不符",
    "empty": "无可比较文字",
}


def run(*, text: str) -> Reply:
    """The reply the router gives `text` as the first message of a fresh conversation; nothing is kept."""
    router = make_router(store=MemoryStore(), record=False)
    message = IncomingMessage(channel=CHANNEL, user_id=f"try-{uuid.uuid4().hex}", text=text)
    with get_sessionmaker()() as db_session:  # rolled back: a handoff opens no ticket
        try:
            return router.handle(message, db_session=db_session)
        finally:
            db_session.rollback()


def try_question(*, db_session: Session, text: str) -> dict[str, Any]:
    """What the bot replies to a question and why: the reply and its options, intent, topic, confidence, the matcher's
    outcome, the threshold it was compared with, the margin to the runner-up and the ranked candidates."""
    text = text.strip()[: get_settings().max_message_chars]
    if not text:
        return {"text": text, "outcome": None, "candidates": []}
    reply = run(text=text)
    snapshot = get_live_knowledge().current(db_session=db_session)
    decision = reply.decision
    by_router = decision is not None
    if decision is None:  # a rule answered before the matcher: its candidates are shown for reference
        result = snapshot.matcher.match(text)
        ranked = [(c.topic, c.score) for c in result.candidates]
        outcome, reranked = result.outcome, result.reranked
    else:
        ranked, outcome, reranked = list(decision.candidates), decision.outcome, decision.reranked
    return {
        "text": text,
        "reply": {
            "text": reply.text,
            "options": [{"label": o.label, "payload": o.payload} for o in reply.options],
            "rendered": reply.render_text(),
        },
        "intent": reply.intent,
        "intent_label": INTENT_LABELS.get(reply.intent, reply.intent),
        "topic": reply.topic,
        "topic_question": topic_question(snapshot, reply.topic),
        "confidence": reply.confidence,
        "outcome": outcome if by_router else None,
        "outcome_label": OUTCOME_LABELS[outcome] if by_router else None,
        "gate": decision.gate if decision else None,
        "gate_label": GATE_LABELS.get(decision.gate) if decision else None,
        "threshold": decision.threshold if decision else None,
        "score": decision.score if decision else None,
        "margin": decision.margin if decision else None,
        "reason": reason(reply, decision, snapshot),
        "reranked": reranked,
        "mode": snapshot.matcher.mode,
        "matched": by_router,
        "candidates": candidates(snapshot, ranked),
    }


def topic_question(snapshot: KnowledgeSnapshot, topic: str | None) -> str:
    """An FAQ topic's question, or an outside subject's name."""
    if topic is None:
        return ""
    entry = snapshot.entries.get(topic)
    if entry is not None:
        return entry.question
    subject = load_subjects().get(topic)
    return f"不在解答范围：{subject.name}" if subject else ""


def candidates(snapshot: KnowledgeSnapshot, ranked: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """The ranked topics with their scores and entries."""
    guides = get_guides()
    rows = []
    for rank, (topic, score) in enumerate(ranked, 1):
        entry = snapshot.entries.get(topic)
        rows.append(
            {
                "rank": rank,
                "topic": topic,
                "score": score,
                "question": entry.question if entry else "",
                "category": entry.category if entry else "",
                "guide": topic in guides,
            }
        )
    return rows


def policy_of(snapshot: KnowledgeSnapshot, decision: Decision) -> Policy:
    """The policy the matcher applied: the full one after re-ranking, else the lexical one."""
    config = snapshot.matcher.config
    return config.policy if decision.reranked else config.lexical_policy


def reason(reply: Reply, decision: Decision | None, snapshot: KnowledgeSnapshot) -> str:
    """Why the bot replied as it did, in a sentence or two of Chinese."""
    intent = INTENT_LABELS.get(reply.intent, reply.intent)
    if decision is None:
        return f"这条消息在 FAQ 匹配之前就由规则识别为“{intent}”，没有经过匹配器。"
    confidence, threshold = reply.confidence or 0.0, decision.threshold
    policy = policy_of(snapshot, decision)
    why = {
        ("answer", "answer_at"): f"置信度 {confidence:.2f} ≥ 直接回答阈值 {threshold or 0:.2f}，直接回答。",
        ("clarify", "clarify_at"): f"置信度 {confidence:.2f} 低于直接回答阈值 {policy.answer_at:.2f}，"
        f"但不低于请选择阈值 {threshold or 0:.2f}，所以请商户在最接近的几个问题中选择。",
        ("clarify", "min_score"): f"置信度 {confidence:.2f} 达到直接回答阈值，但最高分 {decision.score:.3f} "
        f"低于直接回答的最低分数 {threshold or 0:.3f}，所以请商户选择。",
        ("clarify", "generic"): f"置信度 {confidence:.2f} 本可直接回答，但问题比较笼统（排名前两位的条目都包含这句话"
        "说的全部内容），所以请商户选择。",
        ("clarify", "aspect"): f"置信度 {confidence:.2f} 本可直接回答，但问的是排名第一的条目没有涉及的方面"
        "（如账务处理、保存期限、处罚、收费、个人信息），所以请商户选择。",
        ("not_sure", "clarify_at"): f"置信度 {confidence:.2f} 低于请选择阈值 {threshold or 0:.2f}，无法回答。",
        ("out_of_scope", "outside_at"): f"排名第一的是不在解答范围内的主题，置信度 {confidence:.2f} ≥ 超出范围阈值 "
        f"{threshold or 0:.2f}，所以说明不在范围内，并告知去哪里咨询。",
        ("not_sure", "outside_at"): f"排名第一的是不在解答范围内的主题，但置信度 {confidence:.2f} 低于超出范围阈值 "
        f"{threshold or 0:.2f}，无法回答。",
        ("not_sure", "empty"): "消息里没有可以比较的文字，无法回答。",
    }.get((decision.outcome, decision.gate), f"匹配结果：{OUTCOME_LABELS[decision.outcome]}。")
    if decision.outcome == "not_sure" and confidence == 0:
        why += "（消息里没有发票或税务相关的词，置信度记为 0。）"
    then = {
        "guide": "该条目有排查指南，所以开始按步骤排查。",
        "fallback": "给出兜底回复，并提供转人工。",
        "handoff": "已连续没能理解，转人工客服。",
    }.get(reply.intent, "")
    return why + then
