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
import re
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
    """Hashes and counts the bytes that pass."""

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
    """Feed every chunk to ``sink`` in order, hashing chunk N on a thread while chunk N+1 is read.

    However pump ends (normally, by an exception or by cancellation) no write to ``sink`` is running or
    will run once it has returned: a write still in flight on the worker thread is waited for (a queued one
    that has not started is cancelled instead), so the caller may inspect or discard the sink at once.
    """
    executor = hashing_executor()
    pending: concurrent.futures.Future[None] | None = None
    try:
        async for chunk in chunks:
            if pending is not None:
                await asyncio.wrap_future(pending)
                pending = None
            if len(chunk) >= _INLINE_BELOW:
                pending = executor.submit(sink.write, chunk)
            elif chunk:
                sink.write(chunk)
        if pending is not None:
            await asyncio.wrap_future(pending)
            pending = None
        sink.close()
    finally:
        # cancelled, or the stream failed, with a write in flight: drop it if it has not started, else wait
        if pending is not None and not pending.done() and not pending.cancel():
            await _settle(pending)


async def _settle(job: concurrent.futures.Future[None]) -> None:
    """Wait until ``job`` has finished, whatever it raises and however often we are cancelled meanwhile.

    Called from a ``finally`` while another exception (usually CancelledError) propagates: that one wins,
    so a repeated cancellation during the wait is absorbed and the job's own outcome is dropped.
    """
    waiter = asyncio.wrap_future(job)
    while not waiter.done():
        try:
            await asyncio.wait((waiter,))  # unlike awaiting the future, wait() never cancels it
        except asyncio.CancelledError:
            continue
    if not waiter.cancelled():
        waiter.exception()  # retrieved: no "exception was never retrieved" warning


# --- JAR inside a tar layer ----------------------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF = len(_ZIP_MAGIC)  # bytes needed to tell a bare zip, a gzip and a tar apart
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_INFLATE_IN = 64 << 10  # compressed bytes handed to zlib at a time (bounds the unconsumed_tail copies)
_INFLATE_OUT = 1 << 20  # decompressed bytes per step: memory stays bounded whatever the ratio
META_LIMIT = 64 << 10  # largest pax / GNU long-name payload accepted
_REGULAR = (b"0", b"\0", b"7")
_HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")  # no data blocks whatever the size field says
_BUFFERED_META = (b"x", b"L")  # payload read and applied to the next entry
_SKIPPED_META = (b"g", b"K")  # payload ignored (global pax, GNU long link name); the next entry is unaffected
_OCTAL = re.compile(rb"[0-7]*")
_DECIMAL = re.compile(rb"[0-9]+")
_MAX_DECIMAL_DIGITS = 19  # a pax size or record length longer than this is not a tar we can read


class TarFormatError(ValueError):
    pass


class TarJarSink:
    """Finds the JAR member(s) of a (gzipped) tar stream and hashes each while the stream passes.

    A layer whose bytes turn out to be a bare zip (a JAR labelled as tar) is hashed whole, with
    ``member`` None. Only regular files whose name ends in ``.jar`` are candidates; the caller decides
    what none or several mean. ``member_sink`` makes an extra sink per candidate (spooling).

    Malformed input never raises out of :meth:`write` or :meth:`close`. The first problem found (bad tar
    header or pax record, corrupt or truncated gzip, garbage after the gzip stream, a stream that ends
    inside a header or an entry, an oversized pax / long-name payload, a sparse ``.jar`` member) is kept in
    :attr:`error`; from then on the sink ignores further data cheaply, so that a caller teeing the same
    bytes into a layer digest can drain the whole blob. Once ``error`` is set, ``members`` is incomplete and
    its hashes must not be used, and the extra sink of a member cut short is left unclosed. Exceptions that
    are not about the stream's format (an ``OSError`` from a member sink, ``MemoryError``) still propagate.
    Memory stays bounded (about two ``_INFLATE_OUT`` pieces) whatever the compression ratio.
    """

    def __init__(self, member_sink: Callable[[str], Sink] | None = None) -> None:
        self._member_sink = member_sink
        self.error: TarFormatError | None = None
        self.members: list[tuple[str, Sha256Sink]] = []
        self._head = bytearray()  # the first bytes, until there are enough to tell the format
        self._sniffed = False
        self._raw: Sha256Sink | None = None  # set for a bare zip
        self._raw_extra: Sink | None = None
        self._closed = False
        # gzip: one decompressor per member; None between members (or for a plain tar)
        self._gzip = False
        self._inflater: zlib._Decompress | None = None
        self._between = bytearray()  # the start of what follows a member, until it reads as one
        self._gzip_padding = False  # zeros after the last member: only more zeros may follow
        # tar
        self._buffer = bytearray()  # a header block being collected
        self._remaining = 0  # data bytes left in the current entry
        self._padding = 0
        self._sparse_extensions = False  # the next block is an old-GNU sparse extension header
        self._sparse_size = 0  # data size of the sparse entry whose extension headers are being read
        self._current: tuple[str, Sha256Sink, Sink | None] | None = None
        self._pax_path: str | None = None
        self._pax_size: int | None = None
        self._pax_sparse = False
        self._long_name: str | None = None
        self._meta: tuple[bytes, bytearray | None] | None = None  # meta payload being read (None: skipped)
        self._ended = False

    @property
    def is_raw_zip(self) -> bool:
        return self._raw is not None

    # public sink interface
    def write(self, data: bytes) -> None:
        if self._raw is not None:
            self._write_raw(data)
            return
        if self.error is not None or not data:
            return
        if not self._sniffed:
            if self._head or len(data) < _SNIFF:  # a stream fed in tiny pieces: gather the first bytes
                self._head.extend(data)
                if len(self._head) < _SNIFF:
                    return
                data, self._head = bytes(self._head), bytearray()
            self._sniff(data)
        self._process(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._sniffed and self._head:  # the whole stream is shorter than the sniff
            data, self._head = bytes(self._head), bytearray()
            self._sniff(data)
            self._process(data)
        if self._raw is not None:
            if self._raw_extra is not None:
                self._raw_extra.close()
            return
        if self.error is not None:
            return
        try:
            if self._gzip:
                if self._inflater is not None:
                    raise TarFormatError("gzip stream ends early")
                if self._between:
                    raise TarFormatError("garbage after the gzip stream")
            if not self._ended:
                if self._buffer or self._sparse_extensions:
                    raise TarFormatError("tar stream ends inside a header")
                if self._remaining or self._padding or self._meta is not None or self._current is not None:
                    raise TarFormatError("tar stream ends inside an entry")
        except TarFormatError as exc:
            self._fail(exc)

    # internals
    def _fail(self, exc: TarFormatError) -> None:
        if self.error is None:
            self.error = exc
        # drop what parsing held: later writes are ignored
        self._inflater = None
        self._between.clear()
        self._buffer.clear()
        self._meta = None
        self._current = None

    def _sniff(self, data: bytes) -> None:
        self._sniffed = True
        if data.startswith(_ZIP_MAGIC):
            self._raw = Sha256Sink()
            self._raw_extra = self._member_sink("") if self._member_sink else None
            self.members.append(("", self._raw))
        elif data.startswith(_GZIP_MAGIC):
            self._gzip = True
            self._inflater = zlib.decompressobj(wbits=31)

    def _process(self, data: bytes) -> None:
        if self._raw is not None:
            self._write_raw(data)
            return
        try:
            if self._gzip:
                self._inflate(data)
            else:
                self._feed(data)
        except TarFormatError as exc:
            self._fail(exc)

    def _write_raw(self, data: bytes) -> None:
        assert self._raw is not None
        self._raw.write(data)
        if self._raw_extra is not None:
            self._raw_extra.write(data)

    # gzip
    def _inflate(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self._inflater is None:
                pos = self._after_member(view, pos)
                continue
            piece = view[pos : pos + _INFLATE_IN]
            pos += len(piece) - self._inflate_piece(piece)

    def _inflate_piece(self, piece: memoryview | bytes) -> int:
        """Inflate ``piece`` in bounded steps into the tar parser; returns how many of its bytes follow the
        end of the gzip member (0 while the member goes on)."""
        inflater = self._inflater
        assert inflater is not None
        data: memoryview | bytes = piece
        while True:
            try:
                out = inflater.decompress(data, _INFLATE_OUT)
            except zlib.error as exc:
                raise TarFormatError(f"gzip stream is corrupt: {exc}") from None
            if out:
                self._feed(out)
            if inflater.eof:
                self._inflater = None
                return len(inflater.unused_data)
            data = inflater.unconsumed_tail
            if not data and len(out) < _INFLATE_OUT:  # a full piece may leave output pending in zlib
                return 0

    def _after_member(self, view: memoryview, pos: int) -> int:
        """Bytes after a gzip member: another member (as eStargz and ``cat a.gz b.gz`` make), zero padding,
        or garbage. Returns the position up to which ``view`` was consumed."""
        if self._gzip_padding:
            rest = view[pos:]
            if bytes(rest).count(0) != len(rest):
                raise TarFormatError("garbage after the gzip stream")
            return len(view)
        byte = view[pos]
        if not self._between:
            if byte == 0:
                self._gzip_padding = True
                return pos
            if byte != _GZIP_MAGIC[0]:
                raise TarFormatError("garbage after the gzip stream")
            self._between.append(byte)
            return pos + 1
        if byte != _GZIP_MAGIC[1]:
            raise TarFormatError("garbage after the gzip stream")
        self._between.clear()
        self._inflater = zlib.decompressobj(wbits=31)
        self._inflate_piece(_GZIP_MAGIC)
        return pos + 1

    # tar
    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._ended:
                return  # trailing zero blocks and padding
            if self._remaining:
                take = min(self._remaining, len(view))
                piece = view[:take]
                if self._meta is not None:
                    if self._meta[1] is not None:
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
                if self._sparse_extensions:
                    self._sparse_extension(header)
                else:
                    self._start_entry(header)

    def _start_entry(self, header: bytes) -> None:
        if header == _ZERO_BLOCK:
            self._ended = True
            return
        if not _checksum_ok(header):
            raise TarFormatError("not a tar stream (bad header checksum)")
        name = _cstr(header[0:100])
        if header[257:263] == b"ustar\0" and header[263:265] == b"00":  # POSIX ustar; GNU uses the area
            prefix = _cstr(header[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        size = _tar_number(header[124:136], "size")
        typeflag = header[156:157]
        if typeflag in _BUFFERED_META or typeflag in _SKIPPED_META:
            if typeflag in _BUFFERED_META and size > META_LIMIT:
                raise TarFormatError(f"{_META_NAMES[typeflag]} of {size} bytes exceeds {META_LIMIT}")
            self._meta = (typeflag, bytearray() if typeflag in _BUFFERED_META else None)
            self._begin_data(size)
            return
        if self._long_name is not None:
            name, self._long_name = self._long_name, None
        if self._pax_path is not None:
            name, self._pax_path = self._pax_path, None
        if self._pax_size is not None:
            size, self._pax_size = self._pax_size, None
        sparse, self._pax_sparse = self._pax_sparse or typeflag == b"S", False
        is_jar = name.lower().endswith(".jar")
        if sparse and is_jar and (typeflag in _REGULAR or typeflag == b"S"):
            raise TarFormatError(f"sparse .jar member not supported: {name}")
        if typeflag in _HEADER_ONLY:
            size = 0
        elif typeflag in _REGULAR and is_jar:
            digest = Sha256Sink()
            extra = self._member_sink(name) if self._member_sink else None
            self._current = (name, digest, extra)
            self.members.append((name, digest))
        if typeflag == b"S" and header[482]:  # old GNU sparse: extension headers precede the data
            self._sparse_extensions = True
            self._sparse_size = size
            return
        self._begin_data(size)

    def _sparse_extension(self, header: bytes) -> None:
        if not header[504]:
            self._sparse_extensions = False
            self._begin_data(self._sparse_size)

    def _begin_data(self, size: int) -> None:
        self._remaining = size
        self._padding = (-size) % _BLOCK
        if not size:
            self._end_entry()

    def _end_entry(self) -> None:
        if self._meta is not None:
            kind, payload = self._meta
            self._meta = None
            if kind == b"L" and payload is not None:
                self._long_name = _cstr(bytes(payload))
            elif kind == b"x" and payload is not None:
                self._apply_pax(_pax_records(bytes(payload)))
        elif self._current is not None:
            if self._current[2] is not None:
                self._current[2].close()
            self._current = None

    def _apply_pax(self, records: list[tuple[str, str]]) -> None:
        sparse_name: str | None = None
        for key, value in records:
            if key == "path":
                if "\0" in value:
                    raise TarFormatError("pax path holds a NUL byte")
                self._pax_path = value
            elif key == "size":
                self._pax_size = _decimal(value.encode("utf-8", "replace"), "pax size")
            elif key.startswith("GNU.sparse."):
                self._pax_sparse = True
                if key == "GNU.sparse.name":
                    sparse_name = value
        if sparse_name is not None:  # GNU pax sparse 0.1 / 1.0 keep the real name here
            self._pax_path = sparse_name


_META_NAMES = {b"x": "pax header", b"L": "GNU long name"}


def _cstr(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _tar_number(field: bytes, what: str) -> int:
    """A numeric header field: octal text, or GNU base-256 (first byte 0x80; 0xff would be negative)."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] and field[0] & 0x80:
        raise TarFormatError(f"bad {what} field (negative or unknown binary encoding)")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not _OCTAL.fullmatch(text):  # int(..., 8) would also take "+1", "-1", "0o1", "1_0"
        raise TarFormatError(f"bad {what} field {text[:16]!r}")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise TarFormatError(f"bad {what} field {text[:16]!r}") from None


def _decimal(text: bytes, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or len(text) > _MAX_DECIMAL_DIGITS:
        raise TarFormatError(f"bad {what} {text[:24]!r}")
    try:
        return int(text)
    except ValueError:
        raise TarFormatError(f"bad {what} {text[:24]!r}") from None


def _checksum_ok(header: bytes) -> bool:
    try:
        expected = _tar_number(header[148:156], "checksum")
    except TarFormatError:
        return False
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    if unsigned == expected:
        return True
    # some old writers summed signed chars (as tarfile also accepts)
    return unsigned - 256 * sum(1 for byte in header[:148] + header[156:] if byte > 127) == expected


def _pax_records(payload: bytes) -> list[tuple[str, str]]:
    """``"%d %s=%s\\n" % (length, key, value)`` records, strictly: any malformed record is a TarFormatError."""
    records = []
    pos = 0
    end = len(payload)
    while pos < end:
        if payload[pos] == 0:  # NUL padding after the last record is tolerated, nothing else
            if payload.count(0, pos) != end - pos:
                raise TarFormatError("pax header holds data after NUL padding")
            break
        space = payload.find(b" ", pos, min(end, pos + _MAX_DECIMAL_DIGITS + 1))
        if space < 0:
            raise TarFormatError("pax record has no length")
        length = _decimal(payload[pos:space], "pax record length")
        # at least the length digits, the space and the newline; and within the payload
        if len(str(length)) + 2 > length or space - pos + 2 > length or pos + length > end:
            raise TarFormatError(f"bad pax record length {length}")
        if payload[pos + length - 1] != 0x0A:
            raise TarFormatError("pax record does not end in a newline")
        record = payload[space + 1 : pos + length - 1]
        key, equals, value = record.partition(b"=")
        if not equals:
            raise TarFormatError("pax record has no '='")
        records.append((key.decode("utf-8", "replace"), value.decode("utf-8", "replace")))
        pos += length
    return records
