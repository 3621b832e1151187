"""CSV cells safe to open in a spreadsheet: text that would start a formula (= + - @, tab, CR) gets a leading "'".

Importing undoes it, so an export re-imported gives back the same text.
"""

import csv
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def escape_cell(value: Any) -> str:
    """The cell text of `value`, with "'" in front when a spreadsheet would read it as a formula (or when it starts
    with "'" itself, so that unescaping gives it back unchanged)."""
    text = "" if value is None else str(value)
    return QUOTE + text if text.startswith((*FORMULA_STARTS, QUOTE)) else text


def unescape_cell(text: str) -> str:
    """The text `escape_cell` was given (a hand-typed "'" before plain text is kept)."""
    if text.startswith(QUOTE) and text[1:].startswith((*FORMULA_STARTS, QUOTE)):
        return text[1:]
    return text


def safe_writer(out: Any, **kwargs: Any) -> Any:
    """A csv.writer whose writerow/writerows escape every cell."""
    return _SafeWriter(csv.writer(out, **kwargs))


class _SafeWriter:
    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([escape_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
