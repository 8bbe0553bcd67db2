"""Structured logging: text for people, JSON lines for log pipelines. Secrets are never passed in."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_result(logger: logging.Logger, result: Any) -> None:
    """One line per non-match with its coordinates and faults."""
    if result.outcome.value == "match":
        return
    c = result.coordinates
    logger.warning(
        "%s %s/%s %s faults=%s wrong_side=%s: %s", result.outcome.value, c.tenant, c.app, c.version,
        ",".join(f.value for f in result.faults), result.wrong_side.value if result.wrong_side else None,
        result.detail,
        extra={"tenant": c.tenant, "app": c.app, "version": c.version, "outcome": result.outcome.value,
               "faults": [f.value for f in result.faults],
               "wrong_side": result.wrong_side.value if result.wrong_side else None},
    )
