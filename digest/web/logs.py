"""Link tokens stay out of every log: a link token is a password to someone's subscription, and access logs
are kept, shipped and read by people who must not hold it. ``RedactTokens`` replaces the token segment of
every link path (``/confirm/``, ``/unsubscribe/``, ``/preferences/``, ``/feedback/``, ``/d/``, ``/archive/``,
``/feed/``) by ``<token>`` in a
record's message, arguments and traceback; ``install()`` puts it on uvicorn's loggers and on the handlers
of the root logger, which carry our own loggers' records (``digest.*`` propagate to the root)."""

from __future__ import annotations

import logging
import re
from typing import Any

TOKEN_PATH = re.compile(r"(/(?:confirm|unsubscribe|preferences|feedback|d|archive|feed)/)[^/?#\s\"'<>,;]+")
# uvicorn.access and uvicorn.error do not propagate to a handler of ours: they get the filter themselves
SERVER_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    return TOKEN_PATH.sub(r"\1<token>", text)


def _redact(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Rewrites a record so that no link token is left in it; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: _redact(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install() -> None:
    """Put the filter where every record of the web process passes: uvicorn's loggers and their handlers,
    and the root logger's handlers. Call it once logging is configured (``create_app``'s start-up, after
    uvicorn's ``dictConfig``); idempotent. A handler added later needs ``RedactTokens`` in its own config."""
    places: list[logging.Filterer] = [logging.getLogger()]
    for name in SERVER_LOGGERS:
        places.append(logging.getLogger(name))
    places += [h for p in list(places) for h in getattr(p, "handlers", [])]
    for place in places:
        if not any(isinstance(f, RedactTokens) for f in place.filters):
            place.addFilter(RedactTokens())


__all__ = ["RedactTokens", "install", "redact"]
