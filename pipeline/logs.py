"""Logging set-up for the command line: plain lines, or one JSON object per line.

A log call may carry `extra={"fields": {...}}`: in JSON logs those become keys of their own (a batch's status,
records, attempts...), so a log pipeline can filter and count without parsing sentences.
"""

from __future__ import annotations

import json
import logging
import sys

# LogRecord attributes a field must not overwrite in a JSON line.
_RESERVED = frozenset({"time", "level", "logger", "message", "exception"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry |= {key: value for key, value in fields.items() if key not in _RESERVED}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged: while a progress bar shows, that is rich's proxy,
    which prints the line above the bar instead of through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(log_format: str = "text", verbose: bool = False) -> None:
    handler = CurrentStderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
