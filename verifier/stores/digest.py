"""Verification in one place: sinks that hash and count bytes as they pass, for both stores.

A sink is synchronous (``write``/``close``); :func:`pump` feeds it from an async byte stream and runs
large writes on a worker thread, so that SHA-256 of chunk N (which releases the GIL) overlaps the
read of chunk N+1. Memory stays at a few chunks whatever the artifact size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import zlib
from collections.abc import AsyncIterator, Callable
from typing import IO, Protocol

CHUNK_SIZE = 1 << 20
_INLINE_BELOW = 64 << 10  # a thread hop costs more than hashing this much
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def hashing_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(2, min(8, (os.cpu_count() or 2) * 2)), thread_name_prefix="sha256"
        )
    return _executor


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Sha256Sink:
    """Hashes and counts. ``limit`` stops counting bytes beyond it into the hash (a runaway stream)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> None:
        pass

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class FileSink:
    """Spools bytes to an open binary file (used only for the zip-integrity re-read)."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._file = fileobj

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def close(self) -> None:
        self._file.flush()


class TeeSink:
    def __init__(self, *sinks: Sink) -> None:
        self._sinks = sinks

    def write(self, data: bytes) -> None:
        for sink in self._sinks:
            sink.write(data)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()


async def pump(chunks: AsyncIterator[bytes], sink: Sink) -> None:
    """Feed every chunk to ``sink`` in order, hashing chunk N on a thread while chunk N+1 is read."""
    loop = asyncio.get_running_loop()
    executor = hashing_executor()
    pending: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            if pending is not None:
                await pending
                pending = None
            if len(chunk) >= _INLINE_BELOW:
                pending = loop.run_in_executor(executor, sink.write, chunk)
            elif chunk:
                sink.write(chunk)
        if pending is not None:
            await pending
            pending = None
        sink.close()
    finally:
        if pending is not None:  # cancelled mid-stream: let the worker finish before the sink goes away
            await asyncio.shield(pending)


# --- JAR inside a tar layer ----------------------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 512


class TarFormatError(ValueError):
    pass


class TarJarSink:
    """Finds the JAR member(s) of a (gzipped) tar stream and hashes each while the stream passes.

    A layer whose bytes turn out to be a bare zip (a JAR labelled as tar) is hashed whole, with
    ``member`` None. Only regular files whose name ends in ``.jar`` are candidates; the caller decides
    what none or several mean. ``member_sink`` makes an extra sink per candidate (spooling).
    """

    def __init__(self, member_sink: Callable[[str], Sink] | None = None) -> None:
        self._member_sink = member_sink
        self._decompressor: zlib._Decompress | None = None
        self._sniffed = False
        self._raw_zip = False
        self._buffer = bytearray()
        self._remaining = 0  # data bytes left in the current entry
        self._padding = 0
        self._current: tuple[str, Sha256Sink, Sink | None] | None = None
        self._pax_path: str | None = None
        self._pax_size: int | None = None
        self._long_name: str | None = None
        self._meta: tuple[str, bytearray] | None = None  # pax or GNU long name payload being read
        self._ended = False
        self.members: list[tuple[str, Sha256Sink]] = []

    # public sink interface
    def write(self, data: bytes) -> None:
        if not self._sniffed:
            self._sniff(data)
        if self._raw_zip:
            self._raw.write(data)
            if self._raw_extra is not None:
                self._raw_extra.write(data)
            return
        if self._decompressor is not None:
            data = self._decompressor.decompress(data)
        self._feed(data)

    def close(self) -> None:
        if self._raw_zip:
            if self._raw_extra is not None:
                self._raw_extra.close()
            return
        if self._decompressor is not None:
            self._feed(self._decompressor.flush())
            if not self._decompressor.eof:
                raise TarFormatError("gzip stream ends early")
        if self._current is not None or self._remaining:
            raise TarFormatError("tar stream ends inside an entry")

    # internals
    def _sniff(self, data: bytes) -> None:
        self._sniffed = True
        self._raw_extra: Sink | None = None
        if data.startswith(_ZIP_MAGIC):
            self._raw_zip = True
            self._raw = Sha256Sink()
            self._raw_extra = self._member_sink("") if self._member_sink else None
            self.members.append(("", self._raw))
        elif data.startswith(_GZIP_MAGIC):
            self._decompressor = zlib.decompressobj(wbits=31)

    @property
    def is_raw_zip(self) -> bool:
        return self._raw_zip

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._ended:
                return  # trailing zero blocks and padding
            if self._remaining:
                take = min(self._remaining, len(view))
                piece = view[:take]
                if self._meta is not None:
                    self._meta[1].extend(piece)
                elif self._current is not None:
                    self._current[1].write(piece)  # type: ignore[arg-type]
                    if self._current[2] is not None:
                        self._current[2].write(bytes(piece))
                self._remaining -= take
                view = view[take:]
                if not self._remaining:
                    self._end_entry()
                continue
            if self._padding:
                take = min(self._padding, len(view))
                self._padding -= take
                view = view[take:]
                continue
            need = _BLOCK - len(self._buffer)
            self._buffer.extend(view[:need])
            view = view[need:]
            if len(self._buffer) == _BLOCK:
                header = bytes(self._buffer)
                self._buffer.clear()
                self._start_entry(header)

    def _start_entry(self, header: bytes) -> None:
        if header == b"\0" * _BLOCK:
            self._ended = True
            return
        if header[257:262] != b"ustar" and not _checksum_ok(header):
            raise TarFormatError("not a tar stream (bad header)")
        name = _cstr(header[0:100])
        prefix = _cstr(header[345:500]) if header[257:262] == b"ustar" else ""
        if prefix:
            name = f"{prefix}/{name}"
        size = _tar_number(header[124:136])
        typeflag = header[156:157]
        if typeflag in (b"x", b"L", b"g"):
            self._meta = (typeflag.decode(), bytearray())
        else:
            if self._long_name is not None:
                name, self._long_name = self._long_name, None
            if self._pax_path is not None:
                name, self._pax_path = self._pax_path, None
            if self._pax_size is not None:
                size, self._pax_size = self._pax_size, None
            if typeflag in (b"0", b"\0", b"7") and name.lower().endswith(".jar"):
                digest = Sha256Sink()
                extra = self._member_sink(name) if self._member_sink else None
                self._current = (name, digest, extra)
                self.members.append((name, digest))
        self._remaining = size
        self._padding = (-size) % _BLOCK
        if not size:
            self._end_entry()

    def _end_entry(self) -> None:
        if self._meta is not None:
            kind, payload = self._meta
            self._meta = None
            if kind == "L":
                self._long_name = payload.rstrip(b"\0").decode("utf-8", "replace")
            elif kind == "x":
                for key, value in _pax_records(bytes(payload)):
                    if key == "path":
                        self._pax_path = value
                    elif key == "size":
                        self._pax_size = int(value)
        elif self._current is not None:
            if self._current[2] is not None:
                self._current[2].close()
            self._current = None


def _cstr(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _tar_number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for large sizes
        value = int.from_bytes(field[1:], "big")
        return value
    text = field.split(b"\0", 1)[0].strip() or b"0"
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"bad size field {text!r}") from None


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156].split(b"\0", 1)[0].strip()
    try:
        expected = int(stored or b"0", 8)
    except ValueError:
        return False
    return sum(header[:148]) + 8 * 32 + sum(header[156:]) == expected


def _pax_records(payload: bytes) -> list[tuple[str, str]]:
    records = []
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            break
        length = int(payload[pos:space])
        record = payload[space + 1 : pos + length - 1].decode("utf-8", "replace")
        key, _, value = record.partition("=")
        records.append((key, value))
        pos += length
    return records
