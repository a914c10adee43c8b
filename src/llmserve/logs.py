"""Server logs on stderr: every line timestamped; `text` for people, `json` for log collectors.

uvicorn's own loggers go through the same handler (it is started with `log_config=None`); its
access log is off: api/http/request_log.py writes one richer line per request instead.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

from llmserve.config import LogConfig

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def timestamp(record: logging.LogRecord) -> str:
    """The record's local time in ISO 8601 with milliseconds and the UTC offset."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`2025-01-31T12:00:00.123+00:00 INFO llmserve.requests: message`"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(config: LogConfig) -> None:
    """Send every log record at `config.level` or above to stderr, formatted as configured."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(config.level.upper())
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(config.level.upper())
