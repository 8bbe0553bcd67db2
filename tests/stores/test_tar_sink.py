"""TarJarSink and pump against crafted streams: pure, in memory, no registry.

Every feed runs on a daemon thread joined with a timeout, so that a parser regression that loops fails the
test instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import random
import tarfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier.stores.digest import (
    _INLINE_BELOW,
    META_LIMIT,
    Sha256Sink,
    TarFormatError,
    TarJarSink,
    TeeSink,
    pump,
)

CHUNKS = [1, 7, 64 << 10, 1 << 20]
FEED_TIMEOUT = 30.0
JAR = random.Random(1).randbytes(40_000)
JAR_SHA = hashlib.sha256(JAR).hexdigest()
END = bytes(1024)


# --- building streams -----------------------------------------------------------------------------

def make_tar(members: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def header(name: bytes, size: int | bytes, typeflag: bytes = b"0", *, magic: bytes = b"ustar\x0000",
           patch: dict[int, bytes] | None = None) -> bytes:
    """A raw 512-byte header with a correct checksum; ``size`` may be a raw field; ``patch`` overwrites."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    field = size if isinstance(size, bytes) else b"%011o\0" % size
    block[124 : 124 + len(field)] = field
    block[136:148] = b"00000000000\0"
    block[156:157] = typeflag
    block[257 : 257 + len(magic)] = magic
    for offset, value in (patch or {}).items():
        block[offset : offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def entry(name: bytes, data: bytes, typeflag: bytes = b"0", **kwargs: object) -> bytes:
    return header(name, len(data), typeflag, **kwargs) + padded(data)  # type: ignore[arg-type]


def pax(records: bytes) -> bytes:
    return entry(b"PaxHeaders/x", records, b"x")


def record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def feed(stream: bytes, chunk: int = 64 << 10, *, close: bool = True,
         member_sink: Callable[[str], object] | None = None, timeout: float = FEED_TIMEOUT) -> TarJarSink:
    """Feed ``stream`` in ``chunk``-sized writes (and close) on a thread; fail if that raises or hangs."""
    sink = TarJarSink(member_sink)  # type: ignore[arg-type]
    failure: list[BaseException] = []

    def run() -> None:
        try:
            view = memoryview(stream)
            for start in range(0, len(view), chunk):
                sink.write(bytes(view[start : start + chunk]))
            if close:
                sink.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"the sink did not finish within {timeout:g}s (a parser loop?)"
    assert not failure, f"the sink raised {failure[0]!r}"
    return sink


def hashes(sink: TarJarSink) -> list[tuple[str, str]]:
    return [(name, digest.hexdigest) for name, digest in sink.members]


def assert_error(sink: TarJarSink, fragment: str = "") -> None:
    assert isinstance(sink.error, TarFormatError), "expected the sink to record a format error"
    assert fragment in str(sink.error), sink.error


# --- well-formed archives -------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("gzipped", [False, True], ids=["tar", "tar.gz"])
def test_member_hash_of_tar_and_tar_gz(chunk: int, gzipped: bool) -> None:
    raw = make_tar({"app/README": b"hello\n", "app/lib/app-1.0.jar": JAR, "app/empty": b""})
    stream = gzip.compress(raw, mtime=0) if gzipped else raw
    sink = feed(stream, chunk)
    assert sink.error is None
    assert not sink.is_raw_zip
    assert hashes(sink) == [("app/lib/app-1.0.jar", JAR_SHA)]
    assert sink.members[0][1].size == len(JAR)


def test_member_sink_gets_the_jar_bytes_and_is_closed() -> None:
    spooled: dict[str, io.BytesIO] = {}
    closed: list[str] = []

    class Spool:
        def __init__(self, name: str) -> None:
            self.name = name
            spooled[name] = io.BytesIO()

        def write(self, data: bytes) -> None:
            spooled[self.name].write(data)

        def close(self) -> None:
            closed.append(self.name)

    stream = gzip.compress(make_tar({"a.jar": JAR, "b.JAR": b"second", "c.txt": b"x"}))
    sink = feed(stream, 7, member_sink=Spool)
    assert sink.error is None
    assert {name: buf.getvalue() for name, buf in spooled.items()} == {"a.jar": JAR, "b.JAR": b"second"}
    assert closed == ["a.jar", "b.JAR"]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_pax_long_name(chunk: int) -> None:
    name = "deep/" * 30 + "ünïcode-app-1.0.jar"
    sink = feed(make_tar({name: JAR}, tarfile.PAX_FORMAT), chunk)
    assert sink.error is None
    assert hashes(sink) == [(name, JAR_SHA)]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_gnu_long_name(chunk: int) -> None:
    name = "deep/" * 30 + "app-1.0.jar"
    sink = feed(gzip.compress(make_tar({"x/" * 60 + "other.txt": b"x", name: JAR}, tarfile.GNU_FORMAT)), chunk)
    assert sink.error is None
    assert hashes(sink) == [(name, JAR_SHA)]


def test_gnu_long_link_name_does_not_eat_the_long_name() -> None:
    long_name = b"n/" * 60 + b"app.jar"
    stream = (entry(b"././@LongLink", b"l/" * 80 + b"\0", b"K", magic=b"ustar  \0")
              + entry(b"././@LongLink", long_name + b"\0", b"L", magic=b"ustar  \0")
              + entry(b"short.jar", JAR, magic=b"ustar  \0") + END)
    sink = feed(stream, 7)
    assert sink.error is None
    assert hashes(sink) == [(long_name.decode(), JAR_SHA)]


def test_ustar_prefix_is_joined() -> None:
    name = "p" * 120 + "/lib/app-1.0.jar"
    sink = feed(make_tar({name: JAR}, tarfile.USTAR_FORMAT))
    assert hashes(sink) == [(name, JAR_SHA)]


def test_gnu_header_ignores_the_prefix_area() -> None:
    # GNU headers keep atime/ctime (and sparse data) where ustar has the prefix
    stream = entry(b"app.jar", JAR, magic=b"ustar  \0", patch={345: b"14000000000\0" + b"junk" * 10}) + END
    sink = feed(stream)
    assert sink.error is None
    # as GNU tar and Go's archive/tar read it (Python's tarfile alone would prefix "14000000000/")
    assert hashes(sink) == [("app.jar", JAR_SHA)]


def test_header_only_types_carry_no_data_whatever_their_size() -> None:
    # a symlink and a directory claiming 1024 bytes: readers (tarfile, Go) skip no data for them
    stream = (header(b"link.jar", 1024, b"2") + header(b"dir/", 1024, b"5")
              + entry(b"real.jar", JAR) + END)
    sink = feed(stream)
    assert sink.error is None
    assert hashes(sink) == [("real.jar", JAR_SHA)]
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        assert [m.name for m in tar.getmembers() if m.isreg()] == ["real.jar"]


def test_trailing_blocks_after_the_end_marker_are_ignored() -> None:
    sink = feed(make_tar({"a.jar": JAR}) + bytes(10240) + b"anything after the end")
    assert sink.error is None
    assert hashes(sink) == [("a.jar", JAR_SHA)]


def test_signed_checksum_is_accepted() -> None:
    block = bytearray(header("é.jar".encode(), len(JAR)))
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % signed
    sink = feed(bytes(block) + padded(JAR) + END)
    assert sink.error is None
    assert hashes(sink) == [("é.jar", JAR_SHA)]


def test_empty_stream_is_an_empty_archive() -> None:
    sink = feed(b"")
    assert sink.error is None and sink.members == []


# --- bare zip -------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 3, 64 << 10])
def test_bare_zip_is_hashed_whole(chunk: int) -> None:
    data = b"PK\x03\x04" + random.Random(2).randbytes(100_000)
    spooled = io.BytesIO()
    closed: list[bool] = []

    class Spool:
        def write(self, piece: bytes) -> None:
            spooled.write(piece)

        def close(self) -> None:
            closed.append(True)

    sink = feed(data, chunk, member_sink=lambda _name: Spool())
    assert sink.is_raw_zip and sink.error is None
    assert hashes(sink) == [("", hashlib.sha256(data).hexdigest())]
    assert sink.members[0][1].size == len(data)
    assert spooled.getvalue() == data and closed == [True]


# --- pax records ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "payload",
    [
        b"0 path=a.jar\n",
        b"-5 path=a.jar\n",
        b"-0 path=a.jar\n",
        b"+13 path=a.jar\n",
        b"1_3 path=a.jar\n",
        b"99999 path=a.jar\n",
        b"2 \n",
        b"1 ",
        b"abc path=a.jar\n",
        b"9" * 5000 + b" path=a.jar\n",  # int() of this many digits would raise ValueError
        b"13 path=a.jarX",  # no newline
        b"8 nokey\n",  # no '='
        b"13 path=a.jar\n13 path=a.jar\n",  # first record's length runs one byte into the second
        b"12 path=a\0b\n",  # a NUL inside a path
        b"12 size=-5\n",
        b"13 size=1_0\n",
        b"12 size= 1\n",
        "11 size=٣\n".encode(),  # int() would take Arabic-Indic digits
        b"31 size=" + b"9" * 22 + b"\n",
        b"12 path=x\n\0\0junk",  # data after NUL padding
    ],
)
@pytest.mark.parametrize("chunk", [1, 64 << 10])
def test_bad_pax_record_sets_error_promptly(payload: bytes, chunk: int) -> None:
    head = pax(payload)
    stream = head + entry(b"a.jar", JAR) + END
    # the error is known once the pax payload is in: no need to wait for close()
    sink = feed(stream[: len(head)], chunk, close=False, timeout=10)
    assert_error(sink, "pax")
    sink = feed(stream, chunk, timeout=10)
    assert_error(sink, "pax")


def test_good_pax_records() -> None:
    payload = record("mtime", "0.5") + record("path", "odd\nname=x.jar") + b"5 k=\n" + record("size", str(len(JAR)))
    # the header's own size field is wrong on purpose: pax size overrides it
    stream = pax(payload) + header(b"ignored", 3) + padded(JAR) + END
    sink = feed(stream, 7)
    assert sink.error is None
    assert hashes(sink) == [("odd\nname=x.jar", JAR_SHA)]


def test_pax_header_padded_with_nuls_is_read() -> None:
    sink = feed(pax(record("path", "p.jar") + bytes(9)) + entry(b"x", JAR) + END)
    assert sink.error is None and hashes(sink) == [("p.jar", JAR_SHA)]


@pytest.mark.parametrize("typeflag", [b"x", b"L"])
def test_oversized_meta_payload_is_refused_at_its_header(typeflag: bytes) -> None:
    head = header(b"././@LongLink", META_LIMIT + 1, typeflag)
    sink = feed(head, close=False)
    assert_error(sink, "exceeds")
    sink = feed(head + padded(b"a" * (META_LIMIT + 1)) + entry(b"a.jar", JAR) + END)
    assert_error(sink, "exceeds")


def test_meta_payload_at_the_limit_is_fine() -> None:
    payload = record("comment", "c" * (META_LIMIT - 40))
    payload += bytes(META_LIMIT - len(payload))
    assert len(payload) == META_LIMIT
    sink = feed(pax(payload) + entry(b"a.jar", JAR) + END)
    assert sink.error is None and hashes(sink) == [("a.jar", JAR_SHA)]


def test_large_global_pax_header_is_skipped_not_buffered() -> None:
    big = record("comment", "g" * (2 * META_LIMIT))
    sink = feed(entry(b"pax_global_header", big, b"g") + entry(b"a.jar", JAR) + END)
    assert sink.error is None and hashes(sink) == [("a.jar", JAR_SHA)]


# --- numeric fields and headers -------------------------------------------------------------------

@pytest.mark.parametrize("field", [b"-0000001\0", b"0o000017\0", b"+0000017\0", b"0000_017\0", b"00000009\0",
                                   b"\xff" * 12, b"\x81" + bytes(11)])
def test_bad_size_field_sets_error(field: bytes) -> None:
    sink = feed(header(b"a.jar", field) + padded(JAR) + END)
    assert_error(sink, "size")


def test_base256_size_field_is_read() -> None:
    stream = header(b"a.jar", b"\x80" + len(JAR).to_bytes(11, "big")) + padded(JAR) + END
    sink = feed(stream)
    assert sink.error is None and hashes(sink) == [("a.jar", JAR_SHA)]


def test_bad_checksum_sets_error_even_with_ustar_magic() -> None:
    block = bytearray(header(b"a.jar", len(JAR)))
    block[0] = ord("b")  # the checksum no longer matches
    sink = feed(bytes(block) + padded(JAR) + END)
    assert_error(sink, "checksum")


def test_not_a_tar_at_all() -> None:
    sink = feed(b"this is plainly not an archive" * 100)
    assert_error(sink, "checksum")
    assert sink.members == []


# --- sparse members -------------------------------------------------------------------------------

def old_gnu_sparse(name: bytes, data: bytes, *, extended: bool) -> bytes:
    patch = {386: b"%011o\0" % 0 + b"%011o\0" % len(data), 482: b"\x01" if extended else b"\0",
             483: b"%011o\0" % len(data)}
    blocks = header(name, len(data), b"S", magic=b"ustar  \0", patch=patch)
    if extended:
        blocks += bytes(504) + b"\x01" + bytes(7)  # one extension block saying another follows
        blocks += bytes(512)  # the last one
    return blocks + padded(data)


@pytest.mark.parametrize("extended", [False, True])
def test_sparse_jar_member_is_refused(extended: bool) -> None:
    sink = feed(old_gnu_sparse(b"app.jar", JAR, extended=extended) + END)
    assert_error(sink, "sparse .jar member not supported")


@pytest.mark.parametrize("extended", [False, True])
def test_sparse_non_jar_member_is_skipped_with_its_extension_headers(extended: bool) -> None:
    stream = old_gnu_sparse(b"disk.img", b"\x07" * 3000, extended=extended) + entry(b"a.jar", JAR) + END
    sink = feed(stream, 7)
    assert sink.error is None and hashes(sink) == [("a.jar", JAR_SHA)]


def test_pax_sparse_jar_is_refused() -> None:
    payload = record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0") + record("GNU.sparse.name", "app.jar")
    sink = feed(pax(payload) + entry(b"./GNUSparseFile.1/app.jar", b"1\n0\n" + bytes(508) + JAR) + END)
    assert_error(sink, "sparse .jar member not supported")


# --- gzip -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bomb() -> tuple[bytes, str, int]:
    """A tar.gz whose single .jar member is 200 MiB of zeros: about 200 KB compressed."""
    size = 200 << 20
    info = tarfile.TarInfo("bomb.jar")
    info.size = size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(info.tobuf(tarfile.PAX_FORMAT))]
    zeros = bytes(1 << 20)
    digest = hashlib.sha256()
    for _ in range(size // len(zeros)):
        parts.append(compressor.compress(zeros))
        digest.update(zeros)
    parts.append(compressor.compress(bytes(-size % 512) + END))
    parts.append(compressor.flush())
    return b"".join(parts), digest.hexdigest(), size


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [64 << 10, 1 << 20])
def test_gzip_bomb_is_read_in_bounded_memory(bomb: tuple[bytes, str, int], chunk: int) -> None:
    stream, expected, size = bomb
    assert len(stream) < 1 << 20 and len(stream) * 500 < size
    tracemalloc.start()
    try:
        sink = feed(stream, chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.error is None
    assert hashes(sink) == [("bomb.jar", expected)] and sink.members[0][1].size == size
    assert peak < 16 << 20, f"peak Python allocation {peak / 2**20:.1f} MiB for a {len(stream)} byte layer"


@pytest.mark.parametrize("chunk", CHUNKS)
def test_multi_member_gzip_is_read_whole(chunk: int) -> None:
    raw = make_tar({"a/README": b"r" * 700, "a/app.jar": JAR, "z": b"z" * 3000})
    cuts = [0, 100, 512, 1500, 1500, 20_000, len(raw) - 700, len(raw)]  # one empty member, one mid-jar
    stream = b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in zip(cuts, cuts[1:], strict=False))
    sink = feed(stream, chunk)
    assert sink.error is None
    assert hashes(sink) == [("a/app.jar", JAR_SHA)]


@pytest.mark.parametrize("chunk", [1, 7, 64 << 10])
def test_zero_padding_after_the_last_member_is_ignored(chunk: int) -> None:
    raw = make_tar({"a.jar": JAR})
    sink = feed(gzip.compress(raw[:3000]) + gzip.compress(raw[3000:]) + bytes(4096), chunk)
    assert sink.error is None and hashes(sink) == [("a.jar", JAR_SHA)]


@pytest.mark.parametrize("trailer", [b"garbage", b"\x1f", b"\x1f\x8c", b"\0\0\0x", b"\x1f\x8b\x08"])
@pytest.mark.parametrize("chunk", [1, 64 << 10])
def test_trailing_garbage_after_gzip_sets_error(trailer: bytes, chunk: int) -> None:
    sink = feed(gzip.compress(make_tar({"a.jar": JAR})) + trailer, chunk)
    assert_error(sink, "gzip")


@pytest.mark.parametrize("chunk", [1, 64 << 10])
def test_truncated_gzip_sets_error_at_close(chunk: int) -> None:
    stream = gzip.compress(make_tar({"a.jar": JAR}))
    for cut in (5, len(stream) // 2, len(stream) - 4):
        sink = feed(stream[:cut], chunk, close=False)
        assert sink.error is None
        sink.close()
        assert_error(sink, "gzip stream ends early")


SMALL_GZ = gzip.compress(make_tar({"r": b"readme", "s.jar": JAR[:3000]}), mtime=0)


@given(position=st.integers(min_value=10), xor=st.integers(min_value=1, max_value=255),
       chunk=st.sampled_from([1, 7, 4096, 1 << 20]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_corrupted_gzip_sets_error_never_raises(position: int, xor: int, chunk: int) -> None:
    stream = bytearray(SMALL_GZ)
    stream[position % len(stream)] ^= xor  # past the header's mtime/xfl/os, every byte is checked
    sink = feed(bytes(stream), chunk, timeout=10)
    assert_error(sink)



# --- truncation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cut, fragment", [(100, "inside a header"), (512 + 1000, "inside an entry"),
                                           (512 + len(JAR) + 10, "inside an entry"),
                                           (1024 + len(JAR) + 3, "inside a header")])
@pytest.mark.parametrize("chunk", [1, 64 << 10])
def test_truncated_tar_sets_error_at_close(cut: int, fragment: str, chunk: int) -> None:
    stream = entry(b"a.jar", JAR) + entry(b"b", b"b" * 100) + END
    sink = feed(stream[:cut], chunk, close=False)
    assert sink.error is None
    sink.close()
    assert_error(sink, fragment)
    sink.close()  # idempotent, still no raise


# --- the contract: never raise, keep draining -----------------------------------------------------

def test_error_stops_parsing_but_a_tee_keeps_draining() -> None:
    stream = pax(b"0 path=a.jar\n") + entry(b"a.jar", JAR) + END + random.Random(3).randbytes(300_000)
    layer = Sha256Sink()
    tar = TarJarSink()
    tee = TeeSink(layer, tar)
    for start in range(0, len(stream), 4096):
        tee.write(stream[start : start + 4096])
    tee.close()
    assert_error(tar, "pax")
    assert layer.size == len(stream) and layer.hexdigest == hashlib.sha256(stream).hexdigest()


def test_first_error_is_kept() -> None:
    sink = feed(b"\x1f\x8b" + b"\xff" * 100)
    assert_error(sink, "gzip stream is corrupt")
    first = sink.error
    sink.write(b"more")
    sink.close()
    assert sink.error is first


def test_format_error_is_still_a_value_error() -> None:
    assert issubclass(TarFormatError, ValueError)


async def test_pump_into_a_malformed_stream_returns_normally() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"\x1f\x8b\x08\x00" + bytes(6)
        for _ in range(3):
            yield random.Random(4).randbytes(200_000)

    sink = TarJarSink()
    await pump(chunks(), sink)
    assert_error(sink, "gzip")


# --- properties -----------------------------------------------------------------------------------

VALID = make_tar({"x/" * 60 + "long.txt": b"t" * 777, "app/lib/app.jar": JAR[:20_000], "z": b"z"})
VALID_STREAMS = {
    "tar": VALID,
    "tar.gz": gzip.compress(VALID, mtime=0),
    "multi.gz": gzip.compress(VALID[:5000], mtime=0) + gzip.compress(VALID[5000:], mtime=0) + bytes(7),
}
VALID_SHA = hashlib.sha256(JAR[:20_000]).hexdigest()


def feed_cuts(stream: bytes, cuts: list[int]) -> TarJarSink:
    sink = TarJarSink()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
            for a, b in zip(points, points[1:], strict=False):
                sink.write(stream[a:b])
            sink.close()
        except BaseException as exc:  # noqa: BLE001
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the sink hung"
    assert not failure, f"the sink raised {failure[0]!r}"
    return sink


@given(kind=st.sampled_from(sorted(VALID_STREAMS)), cuts=st.lists(st.integers(min_value=0), max_size=40))
@settings(max_examples=150, deadline=None)
def test_any_chunking_gives_the_same_member_hash(kind: str, cuts: list[int]) -> None:
    sink = feed_cuts(VALID_STREAMS[kind], cuts)
    assert sink.error is None
    assert hashes(sink) == [("app/lib/app.jar", VALID_SHA)]


@given(data=st.binary(max_size=4096), prefix=st.sampled_from([b"", b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"ustar"]),
       cuts=st.lists(st.integers(min_value=0), max_size=8))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_raise_or_hang(data: bytes, prefix: bytes, cuts: list[int]) -> None:
    feed_cuts(prefix + data, cuts)


@given(kind=st.sampled_from(sorted(VALID_STREAMS)),
       edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
                      min_size=1, max_size=6),
       cuts=st.lists(st.integers(min_value=0), max_size=8))
@settings(max_examples=200, deadline=None)
def test_damaged_archives_never_raise_or_hang(kind: str, edits: list[tuple[int, int]], cuts: list[int]) -> None:
    stream = bytearray(VALID_STREAMS[kind])
    for position, value in edits:
        stream[position % len(stream)] = value
    feed_cuts(bytes(stream), cuts)


@given(payload=st.binary(max_size=300) | st.lists(
    st.sampled_from([b"0 ", b"-1 ", b"12 ", b"5 k=\n", b"path=", b"size=", b"\n", b"=", b"\0", b"9", b" "]),
    max_size=30).map(b"".join))
@settings(max_examples=300, deadline=None)
def test_pax_payload_fuzz_never_raises_or_hangs(payload: bytes) -> None:
    feed_cuts(pax(payload) + entry(b"a.jar", b"data") + END, [])


@st.composite
def archives(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes]]:
    fmt = draw(st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
    names = draw(st.lists(st.text("abcé/_-.", min_size=1, max_size=140).filter(
        lambda n: not n.startswith("/") and "//" not in n and not n.endswith("/")), min_size=1, max_size=5,
        unique=True))
    members = {}
    for i, name in enumerate(names):
        name = name + (".jar" if draw(st.booleans()) else "")
        if fmt == tarfile.USTAR_FORMAT and len(name.encode()) > 100:
            name = name[-90:].lstrip("/") or f"n{i}"
        members[name] = draw(st.binary(max_size=3000))
    try:
        raw = make_tar(members, fmt)
    except ValueError:  # a name ustar cannot hold
        raw = make_tar(members, tarfile.PAX_FORMAT)
    return raw, members


@given(archive=archives(), gzipped=st.booleans(), cuts=st.lists(st.integers(min_value=0), max_size=10))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_agrees_with_tarfile_on_valid_archives(archive: tuple[bytes, dict[str, bytes]], gzipped: bool,
                                               cuts: list[int]) -> None:
    raw, _ = archive
    expected = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.lower().endswith(".jar"):
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                expected.append((member.name, hashlib.sha256(data).hexdigest()))
    sink = feed_cuts(gzip.compress(raw) if gzipped else raw, cuts)
    assert sink.error is None
    assert hashes(sink) == expected


# --- pump -----------------------------------------------------------------------------------------

class SlowSink:
    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds
        self.started = threading.Event()
        self.writes: list[tuple[float, float]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        begun = time.monotonic()
        self.started.set()
        time.sleep(self.seconds)
        self.writes.append((begun, time.monotonic()))

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("where", ["awaiting-the-next-chunk", "awaiting-the-write", "cancelled-twice"])
async def test_pump_cancellation_waits_for_the_write_in_flight(where: str) -> None:
    sink = SlowSink()
    never = asyncio.Event()
    big = bytes(_INLINE_BELOW)

    async def chunks() -> AsyncIterator[bytes]:
        yield big
        if where != "awaiting-the-next-chunk":
            yield big  # pump now awaits the first write before submitting this one
        await never.wait()
        yield big

    task = asyncio.create_task(pump(chunks(), sink))
    assert await asyncio.to_thread(sink.started.wait, 5)
    task.cancel()
    if where == "cancelled-twice":
        await asyncio.sleep(0.05)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    returned = time.monotonic()
    assert len(sink.writes) == 1, "the write in flight must have finished before pump returned"
    assert sink.writes[0][1] <= returned
    assert not sink.closed
    await asyncio.sleep(0.4)
    assert len(sink.writes) == 1, "no write may start after pump returned"


async def test_pump_writes_everything_in_order_and_closes() -> None:
    pieces = [random.Random(i).randbytes(n) for i, n in enumerate([10, 70_000, 5, 1 << 20, 0, 65_536, 3])]

    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0)

    sink = Sha256Sink()
    await pump(chunks(), sink)
    assert sink.hexdigest == hashlib.sha256(b"".join(pieces)).hexdigest()


async def test_pump_stream_failure_waits_for_the_write_in_flight() -> None:
    sink = SlowSink(0.2)

    async def chunks() -> AsyncIterator[bytes]:
        yield bytes(_INLINE_BELOW)
        await asyncio.to_thread(sink.started.wait, 5)
        raise ConnectionResetError("stream broke")

    with pytest.raises(ConnectionResetError):
        await pump(chunks(), sink)
    returned = time.monotonic()
    assert len(sink.writes) == 1 and sink.writes[0][1] <= returned
