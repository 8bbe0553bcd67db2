"""What a ledger is, independent of where it keeps its rows: the `Ledger` protocol and its value types.

Every implementation keeps two kinds of rows:

* check rows, one per finished check, append-only until pruned: the evidence the gate and the status
  page read (outcome, faults, wrong side, both stores' evidence, read timings and errors);
* one latest-state row per version (latest outcome, first and last check, consecutive non-matches,
  first seen, created_at), updated in the same transaction as the check row it summarises, so that
  a restarted sidecar resumes where it stopped instead of re-checking everything.

A shared PostgreSQL ledger (several replicas) will add leases (``SELECT … FOR UPDATE SKIP LOCKED`` on
the latest-state rows, with an expiry) as methods of this protocol; the embedded SQLite ledger serves
one replica and needs none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..model import ArtifactCoordinates, CheckResult, Fault, InventoryItem, Outcome, WrongSide

UTC = dt.UTC

#: Outcomes that say the stores disagree (as opposed to `error`: could not decide).
FAILING_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.MISMATCH, Outcome.MISSING_FILESYSTEM, Outcome.MISSING_OCI, Outcome.MISSING_BOTH}
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC; a naive datetime (e.g. a `timestamp without time zone` column) is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class VersionState:
    """The ledger's latest knowledge of one version."""

    coordinates: ArtifactCoordinates
    outcome: Outcome | None = None  # None: never checked (unverified)
    last_checked_at: dt.datetime | None = None
    first_checked_at: dt.datetime | None = None
    first_seen: dt.datetime | None = None  # first time the inventory (or a check) named it
    created_at: dt.datetime | None = None  # the platform's own creation time, when the inventory has it
    consecutive_failures: int = 0  # latest checks in a row whose outcome was not `match`
    last_match_at: dt.datetime | None = None
    last_seen: dt.datetime | None = None  # last inventory read that listed it
    gone_at: dt.datetime | None = None  # set when a complete inventory read no longer listed it
    wrong_side: WrongSide | None = None  # of the latest check
    faults: tuple[Fault, ...] = ()
    detail: str | None = None

    @property
    def verified(self) -> bool:
        return self.outcome is not None

    @property
    def known(self) -> bool:
        """Still in the inventory as far as the ledger knows."""
        return self.gone_at is None

    @property
    def lag_origin(self) -> dt.datetime | None:
        """Where verification lag counts from: created_at, else first seen (DESIGN.md)."""
        return self.created_at or self.first_seen


@dataclass(frozen=True, slots=True)
class RecordedCheck:
    """One check row as read back from the ledger."""

    coordinates: ArtifactCoordinates
    outcome: Outcome
    checked_at: dt.datetime
    faults: tuple[Fault, ...] = ()
    wrong_side: WrongSide | None = None
    detail: str | None = None
    duration_seconds: float = 0.0
    filesystem: dict[str, Any] = field(default_factory=dict)
    oci: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report's result object (`CheckResult.as_dict`) plus `checked_at` in ISO 8601."""
        return {
            **self.coordinates.fields(),
            "outcome": self.outcome.value,
            "wrong_side": self.wrong_side.value if self.wrong_side else None,
            "faults": [f.value for f in self.faults],
            "filesystem": dict(self.filesystem),
            "oci": dict(self.oci),
            "detail": self.detail,
            "checked_at": self.checked_at.isoformat(),
        }


class RegistryStats(NamedTuple):
    """Registry reads recorded in a window (the same definitions as the `reads`/`read_errors` metrics)."""

    reads: int  # OCI read attempts
    errors: int  # attempts that failed for a reason other than "not there"
    p99_seconds: float | None  # nearest-rank p99 of successful reads; None when there were none

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.reads if self.reads else None


class QuietPeriod(NamedTuple):
    """The longest stretch of a window in which nothing was recorded."""

    start: dt.datetime
    end: dt.datetime

    @property
    def length(self) -> dt.timedelta:
        return self.end - self.start


class PruneResult(NamedTuple):
    checks: int  # check rows deleted
    versions: int  # latest-state rows deleted (versions gone from the inventory before the cut-off)


@runtime_checkable
class Ledger(Protocol):
    """Durable results. Every method may raise `SourceUnavailable` when the store fails."""

    async def record(self, result: CheckResult) -> None:
        """Append the check and update its version's latest state in one transaction; durable on return."""

    async def observe(
        self, items: Iterable[InventoryItem], now: dt.datetime | None = None, *, complete: bool = True
    ) -> None:
        """Remember the versions an inventory read listed (first seen, created_at, last seen).

        `complete`: `items` is the whole inventory, so known versions missing from it are marked gone
        (they keep their history and are pruned after the retention); they come back when listed again.
        """

    async def latest(self) -> dict[ArtifactCoordinates, VersionState]:
        """Every version the ledger knows, gone ones included (see `VersionState.known`)."""

    async def history(self, coordinates: ArtifactCoordinates, limit: int = 20) -> list[RecordedCheck]:
        """One version's checks, most recent first."""

    async def recent_non_matches(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest non-match check rows, most recent first, as `RecordedCheck.as_dict()`."""

    async def history_counts(self, since: dt.datetime) -> dict[Outcome, int]:
        """Checks per outcome (every outcome present) recorded at or after `since`."""

    async def non_matches_since(self, since: dt.datetime) -> list[RecordedCheck]:
        """Per version, its most recent mismatch or missing check at or after `since`; newest first."""

    async def registry_stats(self, since: dt.datetime) -> RegistryStats:
        ...

    async def quiet_period(self, since: dt.datetime, until: dt.datetime) -> QuietPeriod:
        """The longest stretch of [since, until] without a recorded check (the whole span if none)."""

    async def started_at(self) -> dt.datetime | None:
        """When the evidence begins: the earliest check ever recorded (kept across pruning)."""

    async def prune(self, before: dt.datetime) -> PruneResult:
        """Delete check rows older than `before`, except each version's latest; and the latest-state
        rows of versions gone from the inventory before `before`. Known versions are never deleted."""

    async def close(self) -> None:
        ...

    async def __aenter__(self) -> Ledger:
        ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        ...
