"""Telegram channel: webhook endpoint, PTB handlers (webhook and polling) and outbox delivery via the Bot API.

Updates are routed and their replies enqueued into the outbox; `sender.TelegramSender` delivers them.
Only private chats are served; edited messages and group/channel updates are ignored.
"""

CHANNEL = "telegram"
