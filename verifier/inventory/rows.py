"""One inventory row (a mapping from any source) → ``InventoryItem``, with errors that name the row."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Any

from ..model import ArtifactCoordinates, InventoryItem

REQUIRED = ("tenant", "app", "version")
OPTIONAL = ("path", "sha256", "size", "created_at")


class RowError(ValueError):
    pass


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None or value == "":
        raise RowError(f"'{key}' is missing")
    if isinstance(value, (bool, float)):
        raise RowError(f"'{key}' must be a string (quote it in YAML: {key}: \"{value}\")")
    if isinstance(value, int | uuid.UUID):  # integer or uuid ids in the platform's database
        return str(value)
    if not isinstance(value, str):
        raise RowError(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def _created_at(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError:
            raise RowError(f"'created_at' is not an ISO 8601 timestamp: {value[:40]!r}") from None
    else:
        raise RowError(f"'created_at' must be a timestamp, got {type(value).__name__}")
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def item_from_row(row: Mapping[str, Any], *, allow_extra: bool = True) -> InventoryItem:
    if not isinstance(row, Mapping):
        raise RowError(f"expected a mapping with tenant, app and version, got {type(row).__name__}")
    if not allow_extra:
        extra = set(row) - set(REQUIRED) - set(OPTIONAL)
        if extra:
            raise RowError(f"unknown keys {sorted(extra)}")
    coordinates = ArtifactCoordinates(*(_text(row, key) for key in REQUIRED))
    size = row.get("size")
    if isinstance(size, decimal.Decimal) and size == size.to_integral_value():  # numeric columns
        size = int(size)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise RowError(f"'size' must be a non-negative integer, got {size!r}")
    sha256 = row.get("sha256")
    if sha256 is not None and not isinstance(sha256, str):
        raise RowError("'sha256' must be a string")
    path = row.get("path")
    if path is not None and not isinstance(path, str):
        raise RowError("'path' must be a string")
    return InventoryItem(coordinates, path=path or None, sha256=sha256 or None, size=size,
                         created_at=_created_at(row.get("created_at")))


def deduplicate(items: list[InventoryItem]) -> list[InventoryItem]:
    """One item per coordinates (the last row wins), in first-seen order."""
    seen: dict[ArtifactCoordinates, InventoryItem] = {}
    for item in items:
        seen[item.coordinates] = item
    return list(seen.values())
