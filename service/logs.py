"""Structured logs: one JSON object per line (HETEROLORA_LOG_FORMAT=json, the default) or plain
text. Requests and job phases log through `event()`, with the job id and the API key's name,
never the key."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

LOGGER = "heterolora.service"
_FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, _FIELDS, {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, _FIELDS, {}).items())
        return f"{super().format(record)} {fields}".rstrip()


def configure(log_format: str = "json", level: int = logging.INFO) -> None:
    """Give the service's logger its own stderr handler (idempotent: safe at every start)."""
    logger = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(sys.__stderr__)  # past Celery's stdout/stderr redirection
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else TextFormatter("%(asctime)s %(levelname)s %(message)s")
    )
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    logging.getLogger(LOGGER).log(level, name, extra={_FIELDS: fields})
