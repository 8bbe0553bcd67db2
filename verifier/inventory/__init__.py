"""Where versions come from: the platform's PostgreSQL, a walk of the filesystem store, or a list file.

Every source returns ``InventoryItem`` values; a source that cannot be read raises
``SourceUnavailable`` with a one-line reason (never a credential).
"""

from __future__ import annotations

from typing import Protocol

from ..config import Settings
from ..model import InventoryItem


class InventorySource(Protocol):
    name: str

    async def load(self) -> list[InventoryItem]: ...


def inventory_source(settings: Settings) -> InventorySource:
    source = settings.inventory.source
    if source == "postgres":
        from .postgres import PostgresInventory

        assert settings.inventory.dsn is not None
        return PostgresInventory(settings.inventory.dsn.get_secret_value(), settings.inventory.query,
                                 timeout_seconds=settings.inventory.timeout_seconds)
    if source == "filesystem":
        from .filesystem import FilesystemInventory

        return FilesystemInventory(settings.filesystem.root, settings.filesystem.path)
    from .listfile import ListFileInventory

    assert settings.inventory.path is not None
    return ListFileInventory(settings.inventory.path)
