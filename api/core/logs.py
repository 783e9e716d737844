"""Structured logs: one JSON object a line, carrying the request id. No log line holds
a token from a URL's query string, whichever logger prints the URL."""

import json
import logging
import re
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from api.core.middleware import request_id_var

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# A query parameter in a URL: its name (maybe percent-encoded) and its value.
_QUERY_PARAM = re.compile(r"([?&])([^=&#\s\"']+)=([^&#\s\"']*)")
_SECRET_PARAMS = {"token", "access_token"}
REDACTED = "[redacted]"
# The loggers that print request URLs: Uvicorn's (a socket's accept and refusal lines go
# to uvicorn.error, whole query string included), its access log when a deployment turns
# it on, the websockets library's, and ours.
URL_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets", "websockets.server")


def _hide(match: re.Match[str]) -> str:
    start, name, _ = match.groups()
    # As the server reads it: `%74oken` and `+` decoded (Starlette would take it as token).
    if unquote_plus(name).strip().lower() in _SECRET_PARAMS:
        return f"{start}{name}={REDACTED}"
    return match.group(0)


def _redact(value: object) -> object:
    return _QUERY_PARAM.sub(_hide, value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Replaces a query string's token in a record's message and arguments (each argument
    on its own: Uvicorn's access formatter unpacks them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact(arg) for key, arg in record.args.items()}
        return True


def redact_tokens_in_urls() -> None:
    """Install the filter on every logger that prints URLs (a filter on a logger sees only
    what that logger itself logs, so each is named). Called once Uvicorn has configured
    its logging, in each worker; installing twice is a no-op."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def configure_logging(level: str) -> None:
    redact_tokens_in_urls()
    root = logging.getLogger("docstore")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
