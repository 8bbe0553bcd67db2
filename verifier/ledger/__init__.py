"""Durable results: the `Ledger` protocol, its embedded SQLite implementation, and `open_ledger`.

    async with open_ledger(settings) as ledger:
        await ledger.observe(items)               # every successful inventory read
        states = await ledger.latest()            # once at start: resume without a re-check storm
        await ledger.record(result)               # every finished check; durable on return
        await ledger.prune(now - retention(settings))   # hourly

A shared PostgreSQL ledger (`ledger.dsn`, several replicas with leases) comes in a later issue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator

from ..config import Settings
from ..errors import SourceUnavailable
from .base import (
    FAILING_OUTCOMES,
    Ledger,
    PruneResult,
    QuietPeriod,
    RecordedCheck,
    RegistryStats,
    VersionState,
    utc_now,
)
from .sqlite import SCHEMA_VERSION, Clock, LedgerIncompatible, SqliteLedger

__all__ = [
    "FAILING_OUTCOMES",
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerIncompatible",
    "PruneResult",
    "QuietPeriod",
    "RecordedCheck",
    "RegistryStats",
    "SqliteLedger",
    "VersionState",
    "open_ledger",
    "retention",
]


def retention(settings: Settings) -> dt.timedelta:
    """How long check rows are kept: the gate window, plus one coverage window and a day of margin so
    that the evidence just before the window's start (and a late gate run) is still there."""
    return settings.gate.window + settings.schedule.coverage_window + dt.timedelta(days=1)


@contextlib.asynccontextmanager
async def open_ledger(settings: Settings, *, clock: Clock = utc_now) -> AsyncIterator[Ledger]:
    """The configured ledger. Raises `SourceUnavailable` ("ledger PATH: reason") when it cannot be
    opened, or when `ledger.dsn` asks for the shared ledger, which this version cannot open yet."""
    if settings.ledger.dsn is not None:
        raise SourceUnavailable(
            "ledger.dsn: a shared PostgreSQL ledger is not supported yet; remove ledger.dsn to use the "
            "embedded SQLite ledger at ledger.path"
        )
    async with SqliteLedger.open(settings.ledger.path, clock=clock) as ledger:
        yield ledger
