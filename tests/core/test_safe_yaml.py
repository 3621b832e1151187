"""YAML from users: plain data loads as before; anchors, aliases and oversized or too-deep documents are refused."""

import time

import pytest
import yaml

from core import safe_yaml
from core.safe_yaml import UnsafeYamlError


def alias_bomb(depth: int) -> str:
    """The 487-byte attack at depth 9: each level lists the previous one ten times (10^depth leaves once built)."""
    return "".join(f"- &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" if i else "- &a0 [lol, lol]\n" for i in range(depth))


def test_plain_data_loads_like_safe_load():
    text = "- id: busy_server\n  question: 提示服务器繁忙？\n  keywords: [繁忙, 服务器]\n  enabled: true\n"
    assert safe_yaml.safe_load(text) == yaml.safe_load(text)
    assert safe_yaml.safe_load("") is None


@pytest.mark.parametrize("depth", [8, 9])
def test_alias_bomb_is_refused_at_once(depth):
    bomb = alias_bomb(depth)
    started = time.monotonic()
    with pytest.raises(UnsafeYamlError, match="锚点和别名"):
        safe_yaml.safe_load(bomb)
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: 2\n",  # an anchor, even unused
        "base: &b {k: v}\nother:\n  <<: *b\n",  # a merge key needs an alias
        "- *undefined\n",
    ],
)
def test_any_anchor_or_alias_is_refused(text):
    with pytest.raises(UnsafeYamlError, match=r"第 [0-9]+ 行"):
        safe_yaml.safe_load(text)


def test_refusals_are_yaml_errors_for_existing_handlers():
    assert issubclass(UnsafeYamlError, yaml.YAMLError)


def test_oversized_and_too_deep_documents_are_refused():
    with pytest.raises(UnsafeYamlError, match="过大"):
        safe_yaml.safe_load("a: " + "x" * 100, max_bytes=50)
    with pytest.raises(UnsafeYamlError, match="过大"):
        safe_yaml.safe_load("a: " + "发" * 30, max_bytes=50)  # 30 characters, 90 bytes
    with pytest.raises(UnsafeYamlError, match="嵌套"):
        safe_yaml.safe_load("[" * 50_000 + "]" * 50_000)
