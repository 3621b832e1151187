"""WeChat Official Account (公众号) channel: verified push endpoint, passive replies and 客服 API delivery.

Custom-menu CLICK keys the bot understands (configure them in the account's 自定义菜单):
FAQ_MENU (常见问题菜单), INVOICE_LOOKUP (查发票), HANDOFF (转人工). See `inbound.MENU_KEYS`.
"""

CHANNEL = "wechat"
