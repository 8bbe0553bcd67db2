"""Versions discovered by walking the filesystem store along its path template."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from pathlib import Path

from ..errors import SourceUnavailable
from ..model import ArtifactCoordinates, InventoryItem


def template_pattern(template: str) -> tuple[re.Pattern[str], int]:
    """A regex with named groups for a template like ``{tenant}/{app}/{version}/app.jar``, and its depth."""
    parts = re.split(r"(\{tenant\}|\{app\}|\{version\})", template)
    regex = ""
    used: set[str] = set()
    for part in parts:
        if part in ("{tenant}", "{app}", "{version}"):
            name = part[1:-1]
            regex += f"(?P={name})" if name in used else f"(?P<{name}>[^/]+)"
            used.add(name)
        else:
            regex += re.escape(part)
    if used != {"tenant", "app", "version"}:
        raise SourceUnavailable("filesystem.path must use {tenant}, {app} and {version} to be walked")
    return re.compile(f"^{regex}$"), template.count("/") + 1


class FilesystemInventory:
    name = "filesystem"

    def __init__(self, root: Path, template: str) -> None:
        self.root = Path(root)
        self.template = template

    async def load(self) -> list[InventoryItem]:
        return await asyncio.to_thread(self._walk)

    def _walk(self) -> list[InventoryItem]:
        pattern, depth = template_pattern(self.template)
        if not self.root.is_dir():
            raise SourceUnavailable(f"filesystem.root {self.root} is not a directory")
        items: list[InventoryItem] = []
        root = str(self.root)
        for current, dirs, files in os.walk(root, onerror=None, followlinks=False):
            relative_dir = os.path.relpath(current, root)
            level = 0 if relative_dir == "." else relative_dir.count(os.sep) + 1
            if level >= depth - 1:
                dirs[:] = []
            dirs.sort()
            for name in sorted(files):
                relative = name if relative_dir == "." else f"{relative_dir}/{name}"
                match = pattern.match(relative.replace(os.sep, "/"))
                if not match:
                    continue
                try:
                    mtime = os.stat(os.path.join(current, name)).st_mtime
                except OSError:
                    continue
                items.append(InventoryItem(
                    ArtifactCoordinates(match["tenant"], match["app"], match["version"]),
                    created_at=dt.datetime.fromtimestamp(mtime, dt.UTC),
                ))
        return items
