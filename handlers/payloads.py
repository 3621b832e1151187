"""The option-payload grammar, in one place: what choosing an option means, and the options several intents offer.

A payload is `kind[:verb[:arg…]]`; the registry sends it to the handler of `kind:verb`, else of `kind`:

    faq:<topic>                          answer that FAQ topic
    feedback:yes|no:<topic>              "有帮助" / "没解决" after an FAQ answer
    guide:<step>:<n>                     option n (1-based) of a guide's step
    guide:resume · guide:done:yes|no · guide:start:<guide>
    intent:handoff · intent:invoice_lookup · intent:bind
    menu:faq                             how to ask, with examples
    binding:unbind · binding:unbind:yes · binding:keep
    watch:list · watch:add:<code>:<number> · watch:cancel:<id|all>

Telegram's callback data is only the option's number, so payloads can be longer than its 64 bytes; guides keep theirs
short anyway (a test checks).
"""

from dataclasses import dataclass

from core.messages import Option

SEPARATOR = ":"


@dataclass(frozen=True)
class Payload:
    """A parsed payload: its kind and the parts after it."""

    kind: str
    args: tuple[str, ...] = ()

    @property
    def verb(self) -> str:
        """The first part after the kind ("" when there is none)."""
        return self.args[0] if self.args else ""

    def __str__(self) -> str:
        return SEPARATOR.join((self.kind, *self.args))


def parse(text: str) -> Payload:
    """The payload a stored option carries."""
    kind, *args = text.split(SEPARATOR)
    return Payload(kind, tuple(args))


def make(kind: str, *args: object) -> str:
    """A payload's text: `make("watch", "cancel", 3)` is "watch:cancel:3"."""
    return SEPARATOR.join((kind, *(str(arg) for arg in args)))


HANDOFF = Option("转人工客服", make("intent", "handoff"))
INVOICE_LOOKUP = Option("查询发票状态", make("intent", "invoice_lookup"))
BIND = Option("绑定企业", make("intent", "bind"))
FAQ_MENU = Option("看看我能回答哪些问题", make("menu", "faq"))
WATCH_LIST = Option("我的关注", make("watch", "list"))
