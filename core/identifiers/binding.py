"""Binding commands and one-time binding codes as merchants type them ("绑定 <taxpayer id> <code>", "解绑")."""

import re

BIND_COMMAND = re.compile(r"^(我要|我想|申请|帮我|请)?(绑定|綁定|bangding|关联)(企业|公司|商户|账号|帐号|税号)?")
UNBIND_COMMAND = re.compile(r"^(我要|我想|申请|帮我|请)?(解绑|解除绑定|取消绑定|unbind)")
BINDING_CODE = re.compile(r"(?<![0-9A-Z])[0-9]{8}(?![0-9A-Z])")
MENTIONS_BINDING = re.compile(r"绑定|綁定|bangding|关联", re.IGNORECASE)


def is_binding_command(folded: str) -> bool:
    """True for a (folded) message that asks to bind or unbind a merchant."""
    return bool(BIND_COMMAND.match(folded) or UNBIND_COMMAND.match(folded))
