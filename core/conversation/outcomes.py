"""Replies whose recorded text says how a conversation went, written by the handlers and read by the analytics: a
guide's fix asking whether it helped, a guide closed as solved, and a question the merchant said was not solved."""

GUIDE_FEEDBACK_QUESTION = "问题解决了吗？"
GUIDE_SOLVED = "太好了，问题解决了！还有其他问题可以直接问我。"
_NOT_HELPED = "（商户反馈：对“{topic}”的回答没有解决问题）"
_NOT_HELPED_HEAD = _NOT_HELPED.split("{", 1)[0]


def not_helped_text(topic: str) -> str:
    """The reply recorded with a question the merchant said an answer about `topic` did not solve."""
    return _NOT_HELPED.format(topic=topic)


def is_not_helped(reply: str) -> bool:
    """True for the recorded reply of a question that was not solved ("没解决", "还是不行" with nothing left)."""
    return reply.startswith(_NOT_HELPED_HEAD)


def is_finished_guide(reply: str) -> bool:
    """True for a guide reply that shows its fix and asks whether it helped, or closes the guide as solved (an open
    incident's notice may lead it)."""
    return GUIDE_SOLVED in reply or GUIDE_FEEDBACK_QUESTION in reply
