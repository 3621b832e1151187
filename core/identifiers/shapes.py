"""How merchants type identifiers: separators inside them, the shape of a 数电票 number, bad characters named."""

import re

# Separators merchants type inside ids: spaces and dashes (NFKC already folded full-width forms).
SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−]+")


def looks_digital(digits: str) -> bool:
    """True for a run of digits shaped like a 20-digit 数电票 number (never a taxpayer id)."""
    return len(digits) == 20 and digits.startswith("2")


def name_chars(chars: list[str]) -> str:
    """Characters named for a message: “。”、“#”, invisible ones as U+XXXX."""
    unique = list(dict.fromkeys(chars))
    named = [f"“{c}”" if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}" for c in unique[:5]]
    return "、".join(named) + ("等" if len(unique) > 5 else "")
