"""Small talk: thanks, "好的", goodbyes, laughter, emoji and "你是谁" get a short natural reply, never a menu, a
miss or a ticket; a guide in progress keeps its question on screen."""

from core.messages import Reply
from handlers import guide
from handlers.turn import Turn
from knowledge import wording

REPLIES = {
    "thanks": "不客气😊 还有其他发票问题，随时问我。",
    "ack": "好的，有问题随时找我。",
    "bye": "再见，祝您开票顺利！有问题随时来问我。",
    "laugh": "😄 还有什么发票问题需要我帮忙吗？",
    "emoji": "😊 还有什么发票问题需要我帮忙吗？",
    "identity": "我是发票助手，一个智能客服机器人，可以解答开票、作废、红冲、查验、登录等问题，也能帮您查发票状态。"
    "需要真人帮助时，回复“转人工”即可。",
}
IN_GUIDE = {"thanks": "不客气。", "ack": "好的。", "laugh": "😄", "emoji": "😊"}


def kind(turn: Turn) -> str | None:
    """The kind of small talk the message is (see wording.small_talk); None when it is not small talk."""
    return wording.small_talk(turn.text)


def is_reaction(turn: Turn) -> bool:
    """True when the message is only emoji (👍, 😂): a reaction, not an empty message."""
    return wording.is_emoji_only(turn.text)


def is_small_talk(turn: Turn) -> bool:
    """True when the message is thanks, an acknowledgement, a goodbye, laughter, emoji or "你是谁"."""
    return kind(turn) is not None


def reply(turn: Turn) -> Reply | None:
    """A short reply to small talk (the miss counter starts again); with a guide's question open, it is asked again."""
    talk = kind(turn)
    if talk is None:
        return None
    turn.state.unsure_streak = 0
    if guide.is_active(turn):
        lead = IN_GUIDE.get(talk, REPLIES[talk])
        asked = guide.show(turn, lead=f"{lead}我们接着排查：")
        if asked is not None:
            return asked
    return Reply(text=REPLIES[talk], intent="smalltalk")
