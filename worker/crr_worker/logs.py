"""Structured JSON logs on stderr, one object per line; callers pass fields, never secrets."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs,
            "level": record.levelname.lower(),
            "component": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(line, default=str)


def setup(level: str) -> None:
    """Send every crr_worker log to stderr as JSON; kafka-python's chatter only from warnings up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("crr_worker").setLevel(level.upper())


def log(logger: logging.Logger, level: int, message: str, **fields) -> None:
    """Log `message` with `fields` as JSON keys."""
    logger.log(level, message, extra={"fields": fields})
