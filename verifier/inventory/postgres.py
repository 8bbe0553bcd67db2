"""Versions from the platform's PostgreSQL (`app_versions`), read with the configured query."""

from __future__ import annotations

import asyncpg

from ..errors import SourceUnavailable
from ..model import InventoryItem
from .rows import RowError, deduplicate, item_from_row


class PostgresInventory:
    name = "postgres"

    def __init__(self, dsn: str, query: str, *, timeout_seconds: float = 30.0) -> None:
        self._dsn = dsn  # a secret: never in a message
        self.query = query
        self.timeout_seconds = timeout_seconds

    def __repr__(self) -> str:
        return "PostgresInventory(dsn=***)"

    async def load(self) -> list[InventoryItem]:
        try:
            connection = await asyncpg.connect(self._dsn, timeout=self.timeout_seconds)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise SourceUnavailable(f"inventory database unreachable: {_safe(exc)}") from None
        except ValueError:  # a malformed DSN; its text may hold the password, so it is not repeated
            raise SourceUnavailable("inventory.dsn is not a valid PostgreSQL DSN") from None
        try:
            rows = await connection.fetch(self.query, timeout=self.timeout_seconds)
        except TimeoutError:
            raise SourceUnavailable(f"inventory query timed out after {self.timeout_seconds:g}s") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise SourceUnavailable(f"inventory query failed: {_safe(exc)}") from None
        finally:
            await connection.close(timeout=5)
        items = []
        for index, record in enumerate(rows, start=1):
            try:
                items.append(item_from_row(dict(record)))
            except RowError as exc:
                raise SourceUnavailable(f"inventory query row {index}: {exc} "
                                        "(the query must return tenant, app and version columns)") from None
        return deduplicate(items)


def _safe(exc: BaseException) -> str:
    """The error's class and message; asyncpg messages name hosts and users, never passwords."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return f"{type(exc).__name__}: {text}"[:300]
