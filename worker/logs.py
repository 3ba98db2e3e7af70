"""Log output as JSON lines (``COPYDESK_LOG_FORMAT=json``): one object a line for log shippers.

Each line has ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, plus ``job``, ``brief`` and
``task`` when known: from the record's ``extra`` (``logger.info(..., extra={"brief": brief_id})``), the task
id also from Celery's current task. An exception adds ``exception`` (its traceback as one string).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMAT_VARIABLE = "COPYDESK_LOG_FORMAT"
CONTEXT_FIELDS = ("job", "brief", "task")


def json_logs_enabled() -> bool:
    """Whether ``COPYDESK_LOG_FORMAT=json``."""
    return os.environ.get(LOG_FORMAT_VARIABLE, "").strip().lower() == "json"


def _current_task_id() -> str | None:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return None
    request = getattr(current_task, "request", None) if current_task else None
    task_id = getattr(request, "id", None)
    return str(task_id) if task_id else None


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = str(value)
        if "task" not in data and (task_id := _current_task_id()):
            data["task"] = task_id
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def json_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler writing JSON lines to ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler
