"""The filesystem store: where the platform keeps JARs today. Read-only, streaming, confined to its root."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import aiofiles

from ..errors import FileMissing, FileUnreadable, UnsafeInput
from ..model import Fault, InventoryItem, ReadErrorReason
from .digest import Sha256Sink, Sink, TeeSink, pump

# Larger than the network chunk: fewer thread hops; measured 1.08x `openssl dgst` at 4 MiB, 0.81x at 1 MiB.
FILE_CHUNK_SIZE = 4 << 20


@dataclass(frozen=True, slots=True)
class FileRead:
    path: str  # relative to root
    size: int
    sha256: str
    seconds: float


class FilesystemStore:
    def __init__(self, root: Path, path_template: str, *, timeout_seconds: float = 300.0) -> None:
        self.root = Path(root)
        self.path_template = path_template
        self.timeout_seconds = timeout_seconds

    def relative_path(self, item: InventoryItem) -> str:
        """The row's own path, else the template: checked to stay under the root, without I/O."""
        if item.path is not None:
            text = item.path
        else:
            try:
                text = self.path_template.format(**item.coordinates.fields())
            except (KeyError, IndexError, ValueError) as exc:
                raise UnsafeInput(f"filesystem.path template cannot be filled: {exc}",
                                  fault=Fault.UNSAFE_PATH) from None
        if not text or "\0" in text or "\\" in text:
            raise UnsafeInput(f"path {text[:200]!r} is empty or has a NUL or backslash", fault=Fault.UNSAFE_PATH)
        pure = PurePosixPath(text)
        if pure.is_absolute():
            raise UnsafeInput(f"path {text[:200]!r} is absolute", fault=Fault.UNSAFE_PATH)
        if any(part in ("..", ".") for part in text.split("/")) or "" in text.split("/"):
            raise UnsafeInput(f"path {text[:200]!r} has '..', '.' or empty components", fault=Fault.UNSAFE_PATH)
        return str(pure)

    def absolute_path(self, relative: str) -> Path:
        """Resolves symlinks and refuses any path that leaves the root."""
        root = os.path.realpath(self.root)
        full = os.path.realpath(os.path.join(root, relative))
        if os.path.commonpath([root, full]) != root:
            raise UnsafeInput(f"path {relative!r} resolves outside filesystem.root", fault=Fault.UNSAFE_PATH)
        return Path(full)

    def open_verified(self, relative: str) -> int:
        """Open the file without ever leaving the root, even if a directory is swapped for a symlink.

        Symlinks that stay inside the root are resolved first; the resolved path is then walked from the
        root one component at a time with O_NOFOLLOW, so a component replaced by a symlink since the
        check fails instead of leading elsewhere. Only a regular file is returned (as a descriptor);
        a FIFO or device is refused before it could block. Blocking: call it on a worker thread.
        """
        full = self.absolute_path(relative)
        root = os.path.realpath(self.root)
        parts = os.path.relpath(full, root).split(os.sep)
        directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
                os.close(directory)
                directory = child
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeInput(f"path {relative!r} changed into a symlink while being opened",
                                  fault=Fault.UNSAFE_PATH) from None
            raise
        finally:
            os.close(directory)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileUnreadable(f"{relative} is not a regular file")
        return fd

    async def read(self, item: InventoryItem, extra_sink: Sink | None = None) -> FileRead:
        relative = self.relative_path(item)
        started = time.perf_counter()
        digest = Sha256Sink()
        sink: Sink = TeeSink(digest, extra_sink) if extra_sink is not None else digest
        try:
            try:
                fd = await asyncio.wait_for(asyncio.to_thread(self.open_verified, relative), self.timeout_seconds)
            except TimeoutError:
                raise FileUnreadable(f"{relative}: opening took more than {self.timeout_seconds:g}s",
                                     fault=Fault.FILESYSTEM_TIMEOUT, reason=ReadErrorReason.TIMEOUT) from None
            async with aiofiles.open(fd, "rb") as handle:
                await pump(self._chunks(handle, relative), sink)
        except FileNotFoundError:
            raise FileMissing(f"{relative} does not exist under filesystem.root") from None
        except NotADirectoryError:
            raise FileMissing(f"{relative}: a parent is not a directory") from None
        except IsADirectoryError:
            raise FileUnreadable(f"{relative} is a directory") from None
        except PermissionError:
            raise FileUnreadable(f"{relative}: permission denied") from None
        except OSError as exc:
            raise FileUnreadable(f"{relative}: {exc.strerror or exc}") from None
        return FileRead(relative, digest.size, digest.hexdigest, time.perf_counter() - started)

    async def _chunks(self, handle: aiofiles.threadpool.binary.AsyncBufferedReader, relative: str
                      ) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await asyncio.wait_for(handle.read(FILE_CHUNK_SIZE), self.timeout_seconds)
            except TimeoutError:
                raise FileUnreadable(
                    f"{relative}: no data for {self.timeout_seconds:g}s", fault=Fault.FILESYSTEM_TIMEOUT,
                    reason=ReadErrorReason.TIMEOUT,
                ) from None
            if not chunk:
                return
            yield chunk
