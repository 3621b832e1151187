"""A polite pause for an identity that sends more than its per-minute share of messages (counted in the store, so
shared by every worker); the message is still recorded."""

import time

from core import metrics
from core.messages import Reply
from core.store import best_effort
from handlers.turn import Turn

THROTTLED_TEXT = "您发送消息的速度有点快，我需要稍作休息。请一分钟后再发，您刚才的消息已经记录下来了。"


def over_limit(turn: Turn) -> bool:
    """Count the message; True once this identity sent more than `turn.rate_limit` this minute."""
    if not turn.rate_limit:
        return False
    key = f"rate:{turn.message.channel}:{turn.message.user_id}:{int(time.time() // 60)}"
    count = best_effort(lambda: turn.store.incr(key, ttl=120), 0, what="rate limit")
    return count > turn.rate_limit


def pause(turn: Turn) -> Reply:
    """Ask the merchant to slow down."""
    metrics.THROTTLED.inc()
    return Reply(text=THROTTLED_TEXT, intent="fallback")
