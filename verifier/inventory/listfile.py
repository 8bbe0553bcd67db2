"""A YAML or JSON list of versions: for pilots, tests and platforms without a database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from ..errors import SourceUnavailable
from ..model import InventoryItem
from .rows import RowError, deduplicate, item_from_row


class ListFileInventory:
    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    async def load(self) -> list[InventoryItem]:
        return await asyncio.to_thread(self._load)

    def _load(self) -> list[InventoryItem]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SourceUnavailable(f"inventory file {self.path}: {exc.strerror or exc}") from None
        try:
            rows = yaml.safe_load(text)  # JSON is YAML
        except yaml.YAMLError as exc:
            raise SourceUnavailable(f"inventory file {self.path}: not valid YAML or JSON: "
                                    f"{getattr(exc, 'problem', exc)}") from None
        if isinstance(rows, dict) and isinstance(rows.get("versions"), list):
            rows = rows["versions"]
        if rows is None:
            rows = []
        if not isinstance(rows, list):
            raise SourceUnavailable(f"inventory file {self.path}: expected a list of "
                                    "{tenant, app, version} entries")
        items = []
        for index, row in enumerate(rows, start=1):
            try:
                items.append(item_from_row(row, allow_extra=False))
            except RowError as exc:
                raise SourceUnavailable(f"inventory file {self.path}: entry {index}: {exc}") from None
        return deduplicate(items)
