"""The embedded ledger: one SQLite file in WAL mode, for a single replica.

Threads: the ``sqlite3`` module blocks, so every statement runs off the event loop on one of two
dedicated threads, each owning its connection: a writer (all writes, in ``BEGIN IMMEDIATE``
transactions) and a reader (queries see the last committed state and never wait for a write).
Concurrent ``record`` calls are group-committed: whatever arrived while the writer was busy goes into
the next transaction, so 500 concurrent checks cost a handful of fsyncs, and ``record`` returns only
once its rows are committed (``synchronous=FULL``: a crash or power cut loses nothing recorded).

Schema: versioned with ``PRAGMA user_version`` and identified by ``PRAGMA application_id``; the
steps in `MIGRATIONS` run in order, each in one transaction with the version bump. A released step
is never edited: a change is a new step. A file from a newer version, from another application, or
not a database at all is refused without being modified.

Times are stored as integer microseconds since the Unix epoch, UTC (exact, sortable, comparable).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..errors import SourceUnavailable
from ..model import ArtifactCoordinates, CheckResult, Fault, InventoryItem, Outcome, WrongSide
from .base import (
    FAILING_OUTCOMES,
    UTC,
    PruneResult,
    QuietPeriod,
    RecordedCheck,
    RegistryStats,
    VersionState,
    as_utc,
    utc_now,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], dt.datetime]

APPLICATION_ID = 0x50415256  # "PARV": marks a file as a parity-verifier ledger
BUSY_TIMEOUT_SECONDS = 10.0  # another process (e.g. `check` beside `run`) holding the write lock
PRUNE_CHUNK = 5000  # rows per prune transaction, so that records interleave with a large prune

# --- schema ------------------------------------------------------------------------------------------

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: check rows and latest state per version.
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        """CREATE TABLE checks (
            id INTEGER PRIMARY KEY,
            tenant TEXT NOT NULL,
            app TEXT NOT NULL,
            version TEXT NOT NULL,
            outcome TEXT NOT NULL,
            wrong_side TEXT,
            faults TEXT NOT NULL,
            detail TEXT,
            checked_at INTEGER NOT NULL,
            duration_seconds REAL NOT NULL,
            filesystem TEXT NOT NULL,
            oci TEXT NOT NULL,
            fs_read_attempted INTEGER NOT NULL,
            fs_read_seconds REAL NOT NULL,
            fs_read_bytes INTEGER NOT NULL,
            fs_read_error TEXT,
            oci_read_attempted INTEGER NOT NULL,
            oci_read_seconds REAL NOT NULL,
            oci_read_bytes INTEGER NOT NULL,
            oci_read_error TEXT
        )""",
        "CREATE INDEX checks_by_time ON checks (checked_at)",
        "CREATE INDEX checks_by_version ON checks (tenant, app, version, checked_at)",
        """CREATE TABLE versions (
            tenant TEXT NOT NULL,
            app TEXT NOT NULL,
            version TEXT NOT NULL,
            outcome TEXT,
            last_checked_at INTEGER,
            first_checked_at INTEGER,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_match_at INTEGER,
            last_check_id INTEGER,
            PRIMARY KEY (tenant, app, version)
        ) WITHOUT ROWID""",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ),
    # 2: what the inventory said (first/last seen, created_at, gone), and an index for non-matches.
    (
        "ALTER TABLE versions ADD COLUMN first_seen INTEGER",
        "ALTER TABLE versions ADD COLUMN created_at INTEGER",
        "ALTER TABLE versions ADD COLUMN last_seen INTEGER",
        "ALTER TABLE versions ADD COLUMN gone_at INTEGER",
        "UPDATE versions SET first_seen = first_checked_at WHERE first_seen IS NULL",
        "CREATE INDEX checks_non_match ON checks (checked_at) WHERE outcome <> 'match'",
        "CREATE INDEX versions_by_last_check ON versions (last_check_id)",  # prune keeps latest checks
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_FAILING = tuple(o.value for o in FAILING_OUTCOMES)
_FAILING_SQL = ", ".join(f"'{o}'" for o in sorted(_FAILING))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _us(value: dt.datetime) -> int:
    return (as_utc(value) - _EPOCH) // _MICROSECOND


def _dt(value: int | None) -> dt.datetime | None:
    # One C call; exact to the microsecond until 2106 (a double's error stays below 0.5 µs).
    return None if value is None else _fromtimestamp(value / 1e6, UTC)


_fromtimestamp = dt.datetime.fromtimestamp


_OUTCOME = {o.value: o for o in Outcome}
_WRONG_SIDE = {w.value: w for w in WrongSide}
_FAULT = {f.value: f for f in Fault}


def _faults(text: str | None) -> tuple[Fault, ...]:
    return tuple(_FAULT[f] for f in json.loads(text)) if text and text != "[]" else ()


# --- the row a check becomes -------------------------------------------------------------------------


def _check_row(result: CheckResult) -> tuple[Any, ...]:
    c, fs, oci = result.coordinates, result.filesystem, result.oci
    oci_doc = {**oci.as_dict(), "layer_media_type": oci.layer_media_type, "member": oci.member}
    return (
        c.tenant, c.app, c.version, result.outcome.value,
        result.wrong_side.value if result.wrong_side else None,
        json.dumps([f.value for f in result.faults]), result.detail,
        _us(result.checked_at), float(result.duration_seconds),
        json.dumps(fs.as_dict()), json.dumps(oci_doc),
        int(fs.read.attempted), float(fs.read.seconds), int(fs.read.bytes),
        fs.read.error.value if fs.read.error else None,
        int(oci.read.attempted), float(oci.read.seconds), int(oci.read.bytes),
        oci.read.error.value if oci.read.error else None,
    )


_INSERT_CHECK = """INSERT INTO checks (
    tenant, app, version, outcome, wrong_side, faults, detail, checked_at, duration_seconds,
    filesystem, oci, fs_read_attempted, fs_read_seconds, fs_read_bytes, fs_read_error,
    oci_read_attempted, oci_read_seconds, oci_read_bytes, oci_read_error
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""

_CHECK_COLUMNS = "c.id, c.tenant, c.app, c.version, c.outcome, c.checked_at, c.faults, c.wrong_side, " \
                 "c.detail, c.duration_seconds, c.filesystem, c.oci"


def _recorded(row: Sequence[Any]) -> RecordedCheck:
    _id, tenant, app, version, outcome, checked_at, faults, wrong_side, detail, duration, fs, oci = row
    oci_doc = json.loads(oci)
    for extra in ("layer_media_type", "member"):
        oci_doc.pop(extra, None)
    return RecordedCheck(
        coordinates=ArtifactCoordinates(tenant, app, version),
        outcome=_OUTCOME[outcome],
        checked_at=_dt(checked_at),  # type: ignore[arg-type]  # NOT NULL column
        faults=_faults(faults),
        wrong_side=_WRONG_SIDE[wrong_side] if wrong_side else None,
        detail=detail,
        duration_seconds=duration,
        filesystem=json.loads(fs),
        oci=oci_doc,
    )


# --- opening -----------------------------------------------------------------------------------------


class LedgerIncompatible(SourceUnavailable):
    """The file is not a ledger this version can use (newer schema, another application's database)."""


@dataclasses.dataclass(slots=True)
class _Pending:
    row: tuple[Any, ...]
    created_at: int | None
    future: asyncio.Future[None]


class SqliteLedger:
    """Use as ``async with SqliteLedger.open(path) as ledger:``, or ``await connect(…)`` then ``close()``."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._writer_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ledger-writer")
        self._reader_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ledger-reader")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, path: str | Path, *, clock: Clock = utc_now) -> SqliteLedger:
        ledger = cls(Path(path), clock)
        try:
            await ledger._on_writer(ledger._open_writer)
            await ledger._on_reader(ledger._open_reader)
        except BaseException:
            await ledger._shutdown()
            raise
        return ledger

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, path: str | Path, *, clock: Clock = utc_now) -> AsyncIterator[SqliteLedger]:
        ledger = await cls.connect(path, clock=clock)
        try:
            yield ledger
        finally:
            await ledger.close()

    async def __aenter__(self) -> SqliteLedger:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for pending records, checkpoint the WAL into the database file, close both connections."""
        if self._closed:
            return
        try:
            if self._flusher is not None:
                await asyncio.shield(self._flusher)
        finally:
            self._closed = True
            await self._shutdown()

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reader is not None:
            await loop.run_in_executor(self._reader_pool, self._close_reader)
        if self._writer is not None:
            await loop.run_in_executor(self._writer_pool, self._close_writer)
        self._reader_pool.shutdown(wait=False)
        self._writer_pool.shutdown(wait=False)

    def _close_reader(self) -> None:
        assert self._reader is not None
        self._reader.close()
        self._reader = None

    def _close_writer(self) -> None:
        assert self._writer is not None
        try:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # still closes; the WAL is replayed on the next open
            log.warning("ledger %s: WAL checkpoint on close failed: %s", self.path, exc)
        self._writer.close()
        self._writer = None

    def _fail(self, reason: object) -> SourceUnavailable:
        return SourceUnavailable(f"ledger {self.path}: {reason}")

    def _connect(self, mode: str) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode={mode}"
        return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)

    def _open_writer(self) -> None:
        path = self.path
        if path.is_dir():
            raise self._fail("is a directory, not a ledger file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail(f"cannot create its folder: {exc.strerror}") from None
        try:
            conn = self._connect("rw" if path.exists() else "rwc")
        except sqlite3.Error as exc:
            raise self._fail(f"cannot open: {exc}") from None
        try:
            self._inspect(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                log.warning("ledger %s: journal mode is %s, not wal", path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except SourceUnavailable:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._fail(f"cannot be prepared for use ({exc}); any migration was rolled back") from None
        self._writer = conn

    def _inspect(self, conn: sqlite3.Connection) -> None:
        """Refuse, before writing anything, a file this code must not touch."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        except sqlite3.DatabaseError as exc:
            raise self._fail(f"not a SQLite database ({exc}); left untouched") from None
        if app_id == 0 and version == 0 and not tables:
            return  # new or empty: ours to initialise
        if app_id != APPLICATION_ID:
            raise LedgerIncompatible(
                f"ledger {self.path}: a SQLite database of another application "
                f"(application_id {app_id}, tables {', '.join(sorted(tables)) or 'none'}); left untouched"
            )
        if version > SCHEMA_VERSION:
            raise LedgerIncompatible(
                f"ledger {self.path}: written by a newer parity-verifier (schema version {version}; this "
                f"version knows up to {SCHEMA_VERSION}); upgrade parity-verifier, or point ledger.path at "
                "another file. Left untouched"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(current + 1, SCHEMA_VERSION + 1):
            with _transaction(conn):
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                if number == 1:
                    conn.execute("INSERT INTO meta (key, value) VALUES ('created_at', ?)",
                                 (str(_us(self.clock())),))
                conn.execute(f"PRAGMA user_version = {number}")
            if current:
                log.info("ledger %s: schema migrated to version %d", self.path, number)

    def _open_reader(self) -> None:
        try:
            conn = self._connect("rw")
            conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise self._fail(f"cannot open for reading: {exc}") from None
        self._reader = conn

    # --- running on the threads -----------------------------------------------------------------

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, self._guard, fn, *args)

    async def _on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, self._guard, fn, *args)

    def _guard(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.ProgrammingError:
            raise  # a bug here, not an unavailable ledger
        except sqlite3.DatabaseError as exc:  # locked, I/O, disk full, corrupt
            raise self._fail(exc) from None
        except OSError as exc:
            raise self._fail(exc.strerror or exc) from None

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the ledger is closed")
        return self._reader

    def _write(self) -> sqlite3.Connection:
        if self._writer is None:
            raise RuntimeError("the ledger is closed")
        return self._writer

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the ledger is closed")

    # --- recording ------------------------------------------------------------------------------

    async def record(self, result: CheckResult) -> None:
        self._check_open()
        loop = asyncio.get_running_loop()
        created = _us(result.created_at) if result.created_at else None
        pending = _Pending(_check_row(result), created, loop.create_future())
        self._pending.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="ledger group commit")
        await pending.future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._on_writer(self._write_checks, [(p.row, p.created_at) for p in batch])
            except asyncio.CancelledError:
                for p in batch:
                    p.future.cancel()
                raise
            except Exception as exc:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
            else:
                for p in batch:
                    if not p.future.done():
                        p.future.set_result(None)

    def _write_checks(self, rows: list[tuple[tuple[Any, ...], int | None]]) -> None:
        conn = self._write()
        earliest = min(row[7] for row, _ in rows)
        with _transaction(conn):
            for row, created_at in rows:
                check_id = conn.execute(_INSERT_CHECK, row).lastrowid
                self._update_state(conn, row, check_id, created_at)
            start = _evidence_start(conn)
            if start is None or earliest < start:
                conn.execute("INSERT INTO meta (key, value) VALUES ('evidence_started_at', ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(earliest),))

    @staticmethod
    def _update_state(
        conn: sqlite3.Connection, row: tuple[Any, ...], check_id: int | None, created_at: int | None
    ) -> None:
        tenant, app, version, outcome = row[0], row[1], row[2], row[3]
        checked_at = row[7]
        key = (tenant, app, version)
        current = conn.execute(
            "SELECT last_checked_at, first_checked_at, consecutive_failures, last_match_at "
            "FROM versions WHERE tenant = ? AND app = ? AND version = ?", key,
        ).fetchone()
        match_at = checked_at if outcome == Outcome.MATCH.value else None
        if current is None:
            conn.execute(
                "INSERT INTO versions (tenant, app, version, outcome, last_checked_at, first_checked_at, "
                "consecutive_failures, last_match_at, last_check_id, first_seen, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, outcome, checked_at, checked_at, 0 if match_at else 1, match_at, check_id,
                 checked_at, created_at),
            )
            return
        last_checked, first_checked, failures, last_match = current
        if match_at is not None:
            last_match = max(last_match or match_at, match_at)
        first_checked = checked_at if first_checked is None else min(first_checked, checked_at)
        if last_checked is None or checked_at >= last_checked:  # newest: it becomes the latest state
            failures = 0 if match_at is not None else failures + 1
            conn.execute(
                "UPDATE versions SET outcome = ?, last_checked_at = ?, first_checked_at = ?, "
                "consecutive_failures = ?, last_match_at = ?, last_check_id = ?, "
                "first_seen = COALESCE(first_seen, ?), created_at = COALESCE(created_at, ?) "
                "WHERE tenant = ? AND app = ? AND version = ?",
                (outcome, checked_at, first_checked, failures, last_match, check_id, checked_at, created_at,
                 *key),
            )
        else:  # a late arrival of an older check: history only, the latest state stays
            conn.execute(
                "UPDATE versions SET first_checked_at = ?, last_match_at = ?, "
                "created_at = COALESCE(created_at, ?) WHERE tenant = ? AND app = ? AND version = ?",
                (first_checked, last_match, created_at, *key),
            )

    async def observe(
        self, items: Iterable[InventoryItem], now: dt.datetime | None = None, *, complete: bool = True
    ) -> None:
        self._check_open()
        when = _us(now if now is not None else self.clock())
        rows = [
            (i.coordinates.tenant, i.coordinates.app, i.coordinates.version, when,
             _us(i.created_at) if i.created_at else None, when)
            for i in items
        ]
        await self._on_writer(self._write_observed, rows, when, complete)

    def _write_observed(self, rows: list[tuple[Any, ...]], when: int, complete: bool) -> None:
        conn = self._write()
        with _transaction(conn):
            conn.executemany(
                "INSERT INTO versions (tenant, app, version, first_seen, created_at, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, app, version) DO UPDATE SET "
                "first_seen = COALESCE(first_seen, excluded.first_seen), "
                "created_at = COALESCE(excluded.created_at, created_at), "
                "last_seen = excluded.last_seen, gone_at = NULL",
                rows,
            )
            if complete:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS listed "
                             "(tenant TEXT, app TEXT, version TEXT, PRIMARY KEY (tenant, app, version))")
                conn.execute("DELETE FROM temp.listed")
                conn.executemany("INSERT OR IGNORE INTO temp.listed VALUES (?, ?, ?)", (r[:3] for r in rows))
                conn.execute(
                    "UPDATE versions SET gone_at = ? WHERE gone_at IS NULL AND NOT EXISTS ("
                    "SELECT 1 FROM temp.listed l WHERE l.tenant = versions.tenant AND l.app = versions.app "
                    "AND l.version = versions.version)", (when,),
                )
                conn.execute("DELETE FROM temp.listed")

    async def prune(self, before: dt.datetime) -> PruneResult:
        self._check_open()
        cut = _us(before)
        versions = await self._on_writer(self._prune_versions, cut)
        checks = 0
        while True:  # in chunks: records queued meanwhile get the writer between two chunks
            deleted = await self._on_writer(self._prune_checks, cut)
            checks += deleted
            if deleted < PRUNE_CHUNK:
                break
        if checks or versions:
            log.info("ledger %s: pruned %d checks and %d gone versions before %s",
                     self.path, checks, versions, before.isoformat())
        return PruneResult(checks=checks, versions=versions)

    def _prune_versions(self, cut: int) -> int:
        conn = self._write()
        with _transaction(conn):
            return conn.execute(
                "DELETE FROM versions WHERE gone_at IS NOT NULL AND gone_at < ? "
                "AND (last_checked_at IS NULL OR last_checked_at < ?)", (cut, cut),
            ).rowcount

    def _prune_checks(self, cut: int) -> int:
        conn = self._write()
        with _transaction(conn):
            return conn.execute(
                "DELETE FROM checks WHERE id IN (SELECT c.id FROM checks c WHERE c.checked_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.last_check_id = c.id) LIMIT ?)",
                (cut, PRUNE_CHUNK),
            ).rowcount

    # --- reading --------------------------------------------------------------------------------

    async def latest(self) -> dict[ArtifactCoordinates, VersionState]:
        self._check_open()
        return await self._on_reader(self._read_latest)

    def _read_latest(self) -> dict[ArtifactCoordinates, VersionState]:
        rows = self._read().execute(
            "SELECT v.tenant, v.app, v.version, v.outcome, v.last_checked_at, v.first_checked_at, "
            "v.first_seen, v.created_at, v.consecutive_failures, v.last_match_at, v.last_seen, v.gone_at, "
            "c.wrong_side, c.faults, c.detail "
            "FROM versions v LEFT JOIN checks c ON c.id = v.last_check_id"
        ).fetchall()
        memo: dict[int | None, dt.datetime | None] = {None: None}

        def when(value: int | None) -> dt.datetime | None:  # first/last seen: shared by a whole read
            found = memo.get(value, memo)
            if found is memo:
                found = memo[value] = _dt(value)
            return found  # type: ignore[return-value]

        states: dict[ArtifactCoordinates, VersionState] = {}
        for (tenant, app, version, outcome, last_checked, first_checked, first_seen, created_at, failures,
             last_match, last_seen, gone_at, wrong_side, faults, detail) in rows:
            coords = ArtifactCoordinates(tenant, app, version)
            states[coords] = VersionState(
                coordinates=coords,
                outcome=_OUTCOME[outcome] if outcome else None,
                last_checked_at=when(last_checked),
                first_checked_at=when(first_checked),
                first_seen=when(first_seen),
                created_at=when(created_at),
                consecutive_failures=failures,
                last_match_at=when(last_match),
                last_seen=when(last_seen),
                gone_at=when(gone_at),
                wrong_side=_WRONG_SIDE[wrong_side] if wrong_side else None,
                faults=_faults(faults),
                detail=detail,
            )
        return states

    async def history(self, coordinates: ArtifactCoordinates, limit: int = 20) -> list[RecordedCheck]:
        self._check_open()
        return await self._on_reader(self._read_history, coordinates, limit)

    def _read_history(self, coordinates: ArtifactCoordinates, limit: int) -> list[RecordedCheck]:
        rows = self._read().execute(
            f"SELECT {_CHECK_COLUMNS} FROM checks c WHERE c.tenant = ? AND c.app = ? AND c.version = ? "
            "ORDER BY c.checked_at DESC, c.id DESC LIMIT ?",
            (coordinates.tenant, coordinates.app, coordinates.version, limit),
        ).fetchall()
        return [_recorded(r) for r in rows]

    async def recent_non_matches(self, limit: int = 50) -> list[dict[str, Any]]:
        self._check_open()
        checks = await self._on_reader(self._read_recent_non_matches, limit)
        return [c.as_dict() for c in checks]

    def _read_recent_non_matches(self, limit: int) -> list[RecordedCheck]:
        rows = self._read().execute(
            f"SELECT {_CHECK_COLUMNS} FROM checks c WHERE c.outcome <> 'match' "
            "ORDER BY c.checked_at DESC, c.id DESC LIMIT ?", (limit,),
        ).fetchall()
        return [_recorded(r) for r in rows]

    async def history_counts(self, since: dt.datetime) -> dict[Outcome, int]:
        self._check_open()
        rows = await self._on_reader(
            lambda: self._read().execute(
                "SELECT outcome, COUNT(*) FROM checks WHERE checked_at >= ? GROUP BY outcome", (_us(since),)
            ).fetchall()
        )
        counts = dict.fromkeys(Outcome, 0)
        for outcome, n in rows:
            counts[Outcome(outcome)] = n
        return counts

    async def non_matches_since(self, since: dt.datetime) -> list[RecordedCheck]:
        self._check_open()
        return await self._on_reader(self._read_non_matches_since, _us(since))

    def _read_non_matches_since(self, since: int) -> list[RecordedCheck]:
        rows = self._read().execute(
            f"SELECT {_CHECK_COLUMNS.replace('c.', '')} FROM ("
            f"  SELECT {_CHECK_COLUMNS}, ROW_NUMBER() OVER ("
            "    PARTITION BY c.tenant, c.app, c.version ORDER BY c.checked_at DESC, c.id DESC) AS rn"
            f"  FROM checks c WHERE c.outcome <> 'match' AND c.outcome IN ({_FAILING_SQL}) "
            "  AND c.checked_at >= ?"
            ") WHERE rn = 1 ORDER BY checked_at DESC, id DESC", (since,),
        ).fetchall()
        return [_recorded(r) for r in rows]

    async def registry_stats(self, since: dt.datetime) -> RegistryStats:
        self._check_open()
        return await self._on_reader(self._read_registry_stats, _us(since))

    def _read_registry_stats(self, since: int) -> RegistryStats:
        conn = self._read()
        with _snapshot(conn):
            reads, errors = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(oci_read_error IS NOT NULL), 0) FROM checks "
                "WHERE checked_at >= ? AND oci_read_attempted = 1", (since,),
            ).fetchone()
            ok = reads - errors
            p99: float | None = None
            if ok:
                rank = math.ceil(0.99 * ok)  # nearest rank
                p99 = conn.execute(
                    "SELECT oci_read_seconds FROM checks WHERE checked_at >= ? AND oci_read_attempted = 1 "
                    "AND oci_read_error IS NULL ORDER BY oci_read_seconds LIMIT 1 OFFSET ?", (since, rank - 1),
                ).fetchone()[0]
        return RegistryStats(reads=reads, errors=errors, p99_seconds=p99)

    async def quiet_period(self, since: dt.datetime, until: dt.datetime) -> QuietPeriod:
        self._check_open()
        start, end = await self._on_reader(self._read_quiet_period, _us(since), _us(until))
        return QuietPeriod(_dt(start), _dt(end))  # type: ignore[arg-type]  # never None here

    def _read_quiet_period(self, since: int, until: int) -> tuple[int, int]:
        conn = self._read()
        with _snapshot(conn):
            row = conn.execute(
                "SELECT prev, checked_at FROM ("
                "  SELECT checked_at, LAG(checked_at, 1, ?) OVER (ORDER BY checked_at) AS prev"
                "  FROM checks WHERE checked_at >= ? AND checked_at <= ?"
                ") ORDER BY checked_at - prev DESC LIMIT 1", (since, since, until),
            ).fetchone()
            last = conn.execute(
                "SELECT MAX(checked_at) FROM checks WHERE checked_at >= ? AND checked_at <= ?", (since, until)
            ).fetchone()[0]
        if row is None or last is None:
            return since, until
        best = (row[0], row[1])
        if until - last > best[1] - best[0]:
            best = (last, until)
        return best

    async def started_at(self) -> dt.datetime | None:
        self._check_open()  # read from the file: another process (`check` beside `run`) may have recorded
        return _dt(await self._on_reader(_evidence_start, self._read()))


# --- helpers -----------------------------------------------------------------------------------------


def _evidence_start(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'evidence_started_at'").fetchone()
    if row is None:  # nothing recorded yet, or a file written before the key existed
        row = conn.execute("SELECT MIN(checked_at) FROM checks").fetchone()
    return int(row[0]) if row[0] is not None else None


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Several reads that must agree with each other (one WAL snapshot)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")
