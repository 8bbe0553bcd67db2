"""The embedded ledger: durable across restarts, latest state per version, pruning, schema migrations,
refusal of files it must not touch, and many concurrent writers."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest

from tests.ledger.results import T0, coords, healthy_history, item, mismatch, record_all, result
from verifier.config import settings_from_mapping
from verifier.errors import SourceUnavailable
from verifier.ledger import SCHEMA_VERSION, LedgerIncompatible, SqliteLedger, open_ledger
from verifier.ledger.sqlite import APPLICATION_ID, MIGRATIONS
from verifier.model import Fault, Outcome, ReadErrorReason, WrongSide

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def fixed_clock(when: dt.datetime = T0):  # type: ignore[no-untyped-def]
    return lambda: when


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "ledger.sqlite"


# --- durability -----------------------------------------------------------------------------------


async def test_a_restart_keeps_every_recorded_check_and_the_latest_state(path: Path) -> None:
    orders, billing = coords("orders"), coords("billing", "2.1.0")
    bad = mismatch(billing, T0 + HOUR)
    async with SqliteLedger.open(path, clock=fixed_clock()) as ledger:
        await ledger.record(result(orders, at=T0))
        await ledger.record(result(billing, at=T0))
        await ledger.record(bad)

    assert await asyncio.to_thread(path.exists), "the parent folders are created"
    assert await asyncio.to_thread(_wal_size, path) == 0, "closed: the WAL is checkpointed into the file"

    async with SqliteLedger.open(path) as ledger:
        states = await ledger.latest()
        assert set(states) == {orders, billing}
        assert states[orders].outcome is Outcome.MATCH
        b = states[billing]
        assert b.outcome is Outcome.MISMATCH
        assert b.faults == (Fault.OCI_BLOB_DIGEST_MISMATCH,)
        assert b.wrong_side is WrongSide.OCI
        assert b.detail == bad.detail
        assert (b.first_checked_at, b.last_checked_at, b.last_match_at) == (T0, T0 + HOUR, T0)
        assert b.consecutive_failures == 1

        recent = await ledger.recent_non_matches(10)
        assert recent == [{**bad.as_dict(), "checked_at": (T0 + HOUR).isoformat()}]
        history = await ledger.history(billing)
        assert [h.outcome for h in history] == [Outcome.MISMATCH, Outcome.MATCH]
        assert history[0].oci == bad.oci.as_dict()
        assert await ledger.started_at() == T0
        assert (await ledger.history_counts(T0))[Outcome.MATCH] == 2


async def test_consecutive_failures_count_non_matches_in_a_row_and_a_match_resets_them(path: Path) -> None:
    c = coords()
    async with SqliteLedger.open(path) as ledger:
        seen = []
        for i, outcome in enumerate([Outcome.MATCH, Outcome.MISMATCH, Outcome.ERROR, Outcome.MISSING_OCI,
                                     Outcome.MATCH, Outcome.ERROR]):
            await ledger.record(result(c, outcome, T0 + i * HOUR))
            seen.append((await ledger.latest())[c].consecutive_failures)
        assert seen == [0, 1, 2, 3, 0, 1]
        state = (await ledger.latest())[c]
        assert state.outcome is Outcome.ERROR
        assert state.last_match_at == T0 + 4 * HOUR
        assert state.first_checked_at == T0

        # A check that started earlier but finished recording late is history, not the latest state.
        await ledger.record(result(c, Outcome.MISMATCH, T0 + 4.5 * HOUR))
        late = (await ledger.latest())[c]
        assert (late.outcome, late.last_checked_at, late.consecutive_failures) == (Outcome.ERROR, T0 + 5 * HOUR, 1)
        assert len(await ledger.history(c, 100)) == 7


async def test_observed_versions_keep_first_seen_and_created_at_across_restarts(path: Path) -> None:
    a, b, c = coords("a"), coords("b"), coords("c")
    created = T0 - 3 * DAY
    async with SqliteLedger.open(path) as ledger:
        await ledger.observe([item(a, created_at=created), item(b)], T0)
    async with SqliteLedger.open(path, clock=fixed_clock(T0 + DAY)) as ledger:
        await ledger.observe([item(a), item(b), item(c)])  # `now` from the clock; a's row lost created_at
        states = await ledger.latest()
        assert states[a].first_seen == T0 and states[a].created_at == created
        assert states[a].lag_origin == created and states[b].lag_origin == T0
        assert states[c].first_seen == T0 + DAY
        assert all(not s.verified and s.known for s in states.values())

        await ledger.record(result(b, at=T0 + 2 * DAY))
        await ledger.observe([item(b), item(c)], T0 + 3 * DAY)  # a left the inventory
        states = await ledger.latest()
        assert states[a].gone_at == T0 + 3 * DAY and not states[a].known
        assert states[b].known and states[b].first_seen == T0 and states[b].first_checked_at == T0 + 2 * DAY

        await ledger.observe([item(a)], T0 + 4 * DAY, complete=False)  # back, without forgetting b and c
        states = await ledger.latest()
        assert all(s.known for s in states.values())


# --- pruning --------------------------------------------------------------------------------------


async def test_prune_deletes_old_checks_but_keeps_the_window_and_every_latest_state(path: Path) -> None:
    busy, quiet, gone = coords("busy"), coords("quiet"), coords("gone")
    now = T0 + 10 * DAY
    async with SqliteLedger.open(path) as ledger:
        await ledger.observe([item(busy), item(quiet), item(gone)], T0)
        await record_all(ledger, [result(busy, at=T0 + i * DAY) for i in range(11)])
        await ledger.record(mismatch(quiet, T0))  # checked once, long ago
        await ledger.record(result(gone, at=T0))
        await ledger.observe([item(busy), item(quiet)], T0 + DAY)  # gone left the inventory
        in_window_before = await ledger.history_counts(now - 7 * DAY)

        pruned = await ledger.prune(now - 8 * DAY)

        assert pruned.versions == 1  # gone: left the inventory and unchecked since before the cut
        assert pruned.checks == 3  # busy's days 0 and 1, and gone's check
        states = await ledger.latest()
        assert set(states) == {busy, quiet}
        assert states[quiet].outcome is Outcome.MISMATCH and states[quiet].detail, "latest detail survives"
        assert await ledger.history_counts(now - 7 * DAY) == in_window_before
        assert len(await ledger.history(busy, 100)) == 9
        assert await ledger.started_at() == T0, "the evidence start outlives pruning"
        assert (await ledger.prune(now - 8 * DAY)).checks == 0


# --- what the gate reads --------------------------------------------------------------------------


async def test_registry_stats_count_reads_and_errors_and_take_the_p99_of_successful_reads(path: Path) -> None:
    c = coords()
    async with SqliteLedger.open(path) as ledger:
        await record_all(ledger, [result(c, at=T0 + i * dt.timedelta(seconds=1), oci_seconds=(i + 1) / 100)
                                  for i in range(200)])
        await record_all(ledger, [result(c, Outcome.ERROR, T0 + HOUR, oci_error=ReadErrorReason.TIMEOUT,
                                         oci_seconds=30.0) for _ in range(4)])
        await ledger.record(result(c, Outcome.ERROR, T0 + HOUR, oci_read=False))  # unsafe row: no read
        await ledger.record(result(c, at=T0 - DAY, oci_seconds=99.0))  # before the window

        stats = await ledger.registry_stats(T0)
        assert (stats.reads, stats.errors) == (204, 4)
        assert stats.p99_seconds == pytest.approx(1.98)  # nearest rank 198 of 0.01 … 2.00
        assert stats.error_ratio == pytest.approx(4 / 204)
        assert (await ledger.registry_stats(T0 + 2 * HOUR)).p99_seconds is None


async def test_non_matches_since_names_each_failing_version_once_with_its_latest_failure(path: Path) -> None:
    a, b = coords("a"), coords("b")
    async with SqliteLedger.open(path) as ledger:
        await ledger.record(mismatch(a, T0))
        await ledger.record(result(a, Outcome.MISSING_OCI, T0 + HOUR, faults=[Fault.OCI_MANIFEST_UNKNOWN]))
        await ledger.record(result(a, Outcome.MATCH, T0 + 2 * HOUR))
        await ledger.record(result(b, Outcome.ERROR, T0 + HOUR))  # undecided: not a failure
        await ledger.record(mismatch(b, T0 - DAY))  # before the window
        found = await ledger.non_matches_since(T0)
        assert [(f.coordinates, f.outcome, f.checked_at) for f in found] == [(a, Outcome.MISSING_OCI, T0 + HOUR)]


async def test_quiet_period_finds_the_longest_stretch_without_checks(path: Path) -> None:
    c = coords()
    async with SqliteLedger.open(path) as ledger:
        empty = await ledger.quiet_period(T0, T0 + DAY)
        assert (empty.start, empty.end) == (T0, T0 + DAY)
        await record_all(ledger, [result(c, at=T0 + h * HOUR) for h in (1, 2, 12, 13)])
        assert tuple(await ledger.quiet_period(T0, T0 + 15 * HOUR)) == (T0 + 2 * HOUR, T0 + 12 * HOUR)
        assert tuple(await ledger.quiet_period(T0, T0 + 30 * HOUR)) == (T0 + 13 * HOUR, T0 + 30 * HOUR)


# --- schema ---------------------------------------------------------------------------------------

# The DDL of schema version 1 as released. Frozen here: a migration step, once released, is never
# edited, or ledgers written by that release would no longer open as they should.
V1_DDL = (
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
)


def _us(when: dt.datetime) -> int:
    return int(when.timestamp()) * 1_000_000


def test_the_released_v1_migration_is_unchanged() -> None:
    assert MIGRATIONS[0] == V1_DDL


async def test_a_v1_ledger_opens_migrated_with_its_data_intact(path: Path) -> None:
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for statement in V1_DDL:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (str(_us(T0)),))
    conn.execute(
        "INSERT INTO checks VALUES (7, 'acme', 'orders', '1.0.0', 'mismatch', 'oci', '[\"stores_differ\"]', "
        "'they differ', ?, 1.5, '{\"path\": \"p\", \"size\": 1, \"sha256\": null}', "
        "'{\"reference\": \"acme/orders:v1.0.0\"}', 1, 0.1, 1, NULL, 1, 0.4, 1, NULL)", (_us(T0),),
    )
    conn.execute("INSERT INTO versions VALUES ('acme', 'orders', '1.0.0', 'mismatch', ?, ?, 2, NULL, 7)",
                 (_us(T0), _us(T0 - DAY)))
    conn.commit()
    conn.close()

    async with SqliteLedger.open(path) as ledger:
        state = (await ledger.latest())[coords()]
        assert state.outcome is Outcome.MISMATCH
        assert state.consecutive_failures == 2
        assert state.faults == (Fault.STORES_DIFFER,) and state.detail == "they differ"
        assert state.first_seen == T0 - DAY, "first seen backfilled from the first check"
        assert await ledger.started_at() == T0
        assert (await ledger.recent_non_matches())[0]["oci"] == {"reference": "acme/orders:v1.0.0"}
        await ledger.record(result(coords(), at=T0 + HOUR))
        assert (await ledger.latest())[coords()].consecutive_failures == 0

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM checks").fetchone()[0] == 2
    conn.close()


async def test_a_ledger_from_a_newer_version_is_refused_and_left_untouched(path: Path) -> None:
    async with SqliteLedger.open(path) as ledger:
        await ledger.record(result(coords()))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = await asyncio.to_thread(path.read_bytes)

    with pytest.raises(LedgerIncompatible, match=rf"{re.escape(str(path))}.*newer parity-verifier \(schema version {SCHEMA_VERSION + 1}"):
        await SqliteLedger.connect(path)
    assert await asyncio.to_thread(path.read_bytes) == before


def _foreign_database(target: Path) -> None:
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(b"PK\x03\x04 this is a jar, not a database" * 200), "not a SQLite database"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000), "not a SQLite database"),
    (_foreign_database, "a SQLite database of another application .*invoices"),
])
async def test_a_file_that_is_not_a_ledger_is_refused_naming_the_path_and_left_untouched(
    path: Path, make, message: str,  # type: ignore[no-untyped-def]
) -> None:
    path.parent.mkdir(parents=True)
    make(path)
    before = await asyncio.to_thread(path.read_bytes)
    with pytest.raises(SourceUnavailable, match=rf"^ledger {re.escape(str(path))}: {message}"):
        await SqliteLedger.connect(path)
    assert await asyncio.to_thread(path.read_bytes) == before


# --- concurrency ----------------------------------------------------------------------------------


async def test_500_concurrent_records_are_all_kept(path: Path) -> None:
    versions = [coords(f"app{i % 50}", f"1.0.{i // 50}") for i in range(100)]
    async with SqliteLedger.open(path) as ledger:
        await ledger.observe([item(c) for c in versions], T0)
        results = [result(versions[i % 100], Outcome.MATCH if i % 5 else Outcome.ERROR,
                          T0 + dt.timedelta(seconds=i)) for i in range(500)]
        await asyncio.wait_for(record_all(ledger, results), timeout=10)
        assert sum((await ledger.history_counts(T0)).values()) == 500
    async with SqliteLedger.open(path) as ledger:
        counts = await ledger.history_counts(T0)
        assert (counts[Outcome.MATCH], counts[Outcome.ERROR]) == (400, 100)
        states = await ledger.latest()
        assert len(states) == 100 and all(s.last_checked_at is not None for s in states.values())
        # Version i % 100 == 0 got outcomes error (i=0), error (100), ... every i ≡ 0 mod 5: all errors.
        assert states[versions[0]].consecutive_failures == 5
        assert states[versions[1]].consecutive_failures == 0


async def test_records_still_in_flight_when_closing_are_written_before_the_file_closes(path: Path) -> None:
    c = coords()
    ledger = await SqliteLedger.connect(path)
    tasks = [asyncio.create_task(ledger.record(result(c, at=T0 + dt.timedelta(seconds=i)))) for i in range(100)]
    await asyncio.sleep(0)  # they are queued, not yet committed
    await ledger.close()
    await asyncio.gather(*tasks)
    async with SqliteLedger.open(path) as reopened:
        assert len(await reopened.history(c, 1000)) == 100


async def test_concurrent_reads_see_every_committed_record(path: Path) -> None:
    c = coords()
    async with SqliteLedger.open(path) as ledger:
        async def write_then_read(i: int) -> int:
            await ledger.record(result(c, at=T0 + dt.timedelta(seconds=i)))
            return len(await ledger.history(c, 1000))

        seen = await asyncio.gather(*(write_then_read(i) for i in range(50)))
        assert min(seen) >= 1 and max(seen) == 50


# --- opening from settings ------------------------------------------------------------------------


def _settings(tmp_path: Path, ledger: dict[str, str]):  # type: ignore[no-untyped-def]
    return settings_from_mapping({
        "inventory": {"source": "file", "path": "versions.yaml"},
        "filesystem": {"root": "artifacts"},
        "registry": {"url": "http://127.0.0.1:5000"},
        "ledger": ledger,
    }, base_dir=tmp_path)


async def test_open_ledger_uses_ledger_path_relative_to_the_config(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {"path": "var/ledger.sqlite"})
    async with open_ledger(settings) as ledger:
        await healthy_history(ledger, [coords()], T0, T0 + DAY)
    assert (tmp_path / "var" / "ledger.sqlite").is_file()


async def test_open_ledger_says_a_postgres_ledger_is_not_supported_yet(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {"dsn": "postgresql://parity@db/ledger"})
    with pytest.raises(SourceUnavailable, match="ledger.dsn: a shared PostgreSQL ledger is not supported yet"):
        async with open_ledger(settings):
            pass


async def test_a_ledger_path_that_is_a_folder_is_unavailable_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match=rf"^ledger {re.escape(str(tmp_path))}: is a directory"):
        await SqliteLedger.connect(tmp_path)
