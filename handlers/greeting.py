"""Greeting and help menu."""

from core.messages import Option, Reply
from handlers import payloads
from handlers.turn import Turn
from knowledge import wording

MENU_OPTIONS = [
    Option("常见问题（开票、作废、红冲、查验、登录等）", payloads.make("menu", "faq")),
    payloads.INVOICE_LOOKUP,
    payloads.HANDOFF,
]
WELCOME = (
    "您好，我是发票助手，可以回答开票、作废、红冲、查验、登录等问题，帮您查发票状态，或转人工客服。"
    "请直接描述您的问题，例如“开票提示服务器繁忙怎么办”。"
)


def is_greeting(turn: Turn) -> bool:
    """True when the message only greets ("你好呀", "在吗？", "您好😊", "hello") or asks for the menu."""
    return wording.is_greeting(turn.text)


def welcome(turn: Turn) -> Reply:
    """Welcome the merchant and show what the bot can do."""
    return Reply(text=WELCOME, intent="greeting", options=list(MENU_OPTIONS))


def faq_menu(turn: Turn) -> Reply:
    """How to ask, with examples of questions the bot answers (the menu:faq option)."""
    return Reply(
        text="请直接用一句话描述遇到的问题，最好带上系统的报错提示或错误代码，例如：\n"
        "· 开票提示“可用授信额度不足”\n· 数电发票怎么红冲\n· 登录电子税务局提示网络连接失败\n· 发票查验显示查无此票",
        intent="greeting",
    )
