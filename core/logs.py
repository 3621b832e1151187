"""Logging: plain text on a terminal, JSON lines elsewhere (or as set), with the request id, and tax ids, phone numbers
and tokens masked in every record."""

import contextvars
import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from core.redact import mask

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SECRET = re.compile(r"(?i)(access_token=|secret=|token=|bearer\s+|/bot\d+:)([A-Za-z0-9_\-:.]{6,})")


def scrub(text: str) -> str:
    """Text with personal data and credentials masked."""
    return _SECRET.sub(lambda m: m.group(1) + "***", mask(text))


class ScrubFilter(logging.Filter):
    """Masks the formatted message of every record and stamps it with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw message
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        record.__dict__.pop("color_message", None)  # uvicorn's copy of the message with terminal colour codes
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
FORMATS = ("auto", "json", "text")


def resolve_format(fmt: str) -> str:
    """ "text" or "json": "auto" is text when stderr is a terminal (a person reads it), JSON otherwise."""
    if fmt == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return fmt


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (a test runner may have swapped and closed the one there
    was at set-up)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def make_handler(fmt: str = "json") -> logging.Handler:
    """A stderr handler writing JSON lines (fmt "json"), plain text ("text") or either ("auto"), scrubbed."""
    handler = StderrHandler()
    if resolve_format(fmt) == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    handler.addFilter(ScrubFilter())
    return handler


def configure(*, level: int, fmt: str = "json") -> None:
    """Send logs to stderr as JSON lines (fmt "json"), plain text ("text") or either ("auto"), scrubbed."""
    handler = make_handler(fmt)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


def dict_config(*, level: int, fmt: str = "json") -> dict:
    """What `configure` does, as a logging.config.dictConfig dict: uvicorn applies it in every worker process it
    spawns (`serve --workers N`), which never run the command line's own set-up."""
    loggers: dict[str, dict] = {name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS}
    if level > logging.DEBUG:
        loggers["alembic"] = {"level": logging.WARNING}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"default": {"()": "core.logs.make_handler", "fmt": fmt}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": loggers,
    }
