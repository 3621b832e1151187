"""YAML from users (FAQ imports, guides): plain data only; anchors and aliases are refused, so a few hundred bytes
cannot expand into gigabytes (the "billion laughs" alias bomb)."""

from typing import Any

import yaml

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
ALIAS_REFUSED = "不支持 YAML 锚点和别名（& 与 *），请把引用的内容直接写出来后再导入"


class UnsafeYamlError(yaml.YAMLError):
    """YAML refused before it is built: an anchor or alias, too large, or nested too deeply."""


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that stops at the first anchor or alias (merge keys "<<" need one, so they are refused too)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise UnsafeYamlError(f"{ALIAS_REFUSED}（第 {line} 行）")
        return super().compose_node(parent, index)


def safe_load(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse one YAML document of plain data; UnsafeYamlError (a yaml.YAMLError) for anchors, aliases, more than
    `max_bytes` or nesting too deep for the parser, any other yaml.YAMLError for invalid YAML."""
    if len(text) > max_bytes or len(text.encode("utf-8", errors="replace")) > max_bytes:
        raise UnsafeYamlError(f"YAML 文件过大（最多 {max_bytes // 1024} KB）")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except RecursionError:
        raise UnsafeYamlError("YAML 嵌套层级过深") from None
