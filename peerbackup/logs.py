"""Structured logs: one line per event, `event key=value ...` or JSON lines (--log-json)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

LOGGER = "peerbackup"


def event(log: logging.Logger, what: str, level: int = logging.INFO, /, **fields: Any) -> None:
    log.log(level, what, extra={"pb_fields": fields})


def _value(v: Any) -> str:
    text = str(v)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fields: dict[str, Any] = getattr(record, "pb_fields", {})
        if record.exc_info:
            fields = {**fields, "exception": self.formatException(record.exc_info).replace("\n", " | ")}
        if self.as_json:
            return json.dumps({"ts": ts, "level": record.levelname.lower(), "event": record.getMessage(), **fields},
                              default=str)
        tail = " ".join(f"{k}={_value(v)}" for k, v in fields.items())
        return f"{ts} {record.levelname:<7} {record.getMessage()}" + (f" {tail}" if tail else "")


def setup(as_json: bool, level: int = logging.INFO) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json))
    root = logging.getLogger(LOGGER)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return root
