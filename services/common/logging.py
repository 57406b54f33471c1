"""Structured logging: one JSON object a line (or plain text for a terminal), every line
rid of URL passwords and of the secrets the process holds (``redaction``)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from services.common.redaction import Redactor

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """Renders a record and the fields passed through ``extra=`` as one JSON line."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _RESERVED)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.redact(orjson.dumps(entry, default=str).decode())


class TextFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _RESERVED)
        base = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{base} {extra}" if extra else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return self.redact(text)


def configure_logging(level: str = "INFO", fmt: str = "json",
                      secrets: tuple[str, ...] = ()) -> None:
    """Route every logger (Celery's and uvicorn's included) through one stderr handler,
    which hides URL passwords and ``secrets`` wherever a line holds them."""
    handler = logging.StreamHandler(sys.stderr)
    redactor = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python's warnings too, so that every line on stderr has the one format.
    logging.captureWarnings(True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One line a task would cost more than the task at high rates; inferq logs what matters.
    # httpx logs every request it sends: the CLI's and inferq up's own calls.
    for name in ("uvicorn.access", "celery.app.trace", "celery.worker.strategy", "httpx",
                 "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
