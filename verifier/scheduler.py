"""When each version is checked: new versions first, non-matches again soon (with back-off), and every
version at least once per coverage window, the stalest first.

Pure ordering logic with no I/O, so it is tested with an explicit clock. A heap with lazy invalidation
keeps picking O(log n) under a backlog of 100 000 versions.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .model import ArtifactCoordinates, CheckResult, InventoryItem, Outcome

# A version that matched is re-verified when this share of the coverage window has passed, leaving
# slack so that a busy sidecar still covers everything within the window.
RECHECK_FRACTION = 0.8

_NEW, _DUE = 0, 1


@dataclass(slots=True)
class Track:
    item: InventoryItem
    first_seen: dt.datetime
    last_outcome: Outcome | None = None
    last_checked_at: dt.datetime | None = None
    first_checked_at: dt.datetime | None = None
    consecutive_failures: int = 0
    arrived_while_running: bool = False  # seen first by a refresh after start: its lag is measured
    in_flight: bool = False
    generation: int = 0
    not_before: dt.datetime | None = None  # postponed: a young version not yet settled in both stores

    @property
    def state(self) -> str:
        return self.last_outcome.value if self.last_outcome is not None else "unverified"


@dataclass(frozen=True, slots=True)
class PriorState:
    """What the ledger remembers of a version, so that a restart resumes instead of re-checking all."""

    outcome: Outcome | None
    last_checked_at: dt.datetime | None
    first_checked_at: dt.datetime | None
    first_seen: dt.datetime | None
    consecutive_failures: int = 0


@dataclass(slots=True)
class Scheduler:
    coverage_window: dt.timedelta
    retry_after: dt.timedelta = dt.timedelta(minutes=1)
    retry_max: dt.timedelta = dt.timedelta(hours=1)
    tracks: dict[ArtifactCoordinates, Track] = field(default_factory=dict)
    _heap: list[tuple[int, float, int, ArtifactCoordinates, int]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _loaded_once: bool = False

    # --- inventory ------------------------------------------------------------------------------

    def update_inventory(self, items: Iterable[InventoryItem], now: dt.datetime,
                         prior: Mapping[ArtifactCoordinates, PriorState] | None = None, *,
                         from_ledger: bool = False) -> list[InventoryItem]:
        """Replace the set of known versions. Returns the versions that are new to this process.

        `from_ledger`: the versions the ledger remembers, standing in for an inventory that could not be
        read at start; they are not "new" (no verification lag is measured for them), and the first real
        inventory read still counts as the first.
        """
        prior = prior or {}
        fresh: list[InventoryItem] = []
        present: set[ArtifactCoordinates] = set()
        for item in items:
            present.add(item.coordinates)
            track = self.tracks.get(item.coordinates)
            if track is not None:
                track.item = item
                continue
            known = prior.get(item.coordinates)
            track = Track(item, first_seen=(known.first_seen if known and known.first_seen else now))
            if known is not None:
                track.last_outcome = known.outcome
                track.last_checked_at = known.last_checked_at
                track.first_checked_at = known.first_checked_at
                track.consecutive_failures = known.consecutive_failures
            track.arrived_while_running = self._loaded_once and not from_ledger and track.first_checked_at is None
            self.tracks[item.coordinates] = track
            fresh.append(item)
            self._push(track)
        for gone in set(self.tracks) - present:
            del self.tracks[gone]  # its heap entries are skipped lazily
        if not from_ledger:
            self._loaded_once = True
        return fresh

    # --- ordering -------------------------------------------------------------------------------

    def due_at(self, track: Track) -> dt.datetime | None:
        """None: never checked (most urgent)."""
        if track.last_checked_at is None:
            return None
        if track.last_outcome is Outcome.MATCH:
            return track.last_checked_at + self.coverage_window * RECHECK_FRACTION
        exponent = min(max(0, track.consecutive_failures - 1), 60)
        # in seconds first: a long retry_after times 2**n would overflow timedelta
        backoff = dt.timedelta(seconds=min(self.retry_max.total_seconds(),
                                           self.retry_after.total_seconds() * 2.0 ** exponent))
        return track.last_checked_at + min(backoff, self.coverage_window * RECHECK_FRACTION)

    def _push(self, track: Track) -> None:
        # unique across tracks: a version that leaves and comes back gets a new Track, and the old one's
        # heap entries must not pass for the new one's
        track.generation = next(self._seq)
        due = self.due_at(track)
        if track.not_before is not None and (due is None or due < track.not_before):
            due = track.not_before
        if due is None:
            stamp = track.item.created_at or track.first_seen
            entry = (_NEW, -stamp.timestamp(), track.generation, track.item.coordinates, track.generation)
        else:
            entry = (_DUE, due.timestamp(), track.generation, track.item.coordinates, track.generation)
        heapq.heappush(self._heap, entry)

    def next(self, now: dt.datetime) -> tuple[Track | None, float]:
        """The most urgent version due now (marked in flight), else None and the seconds until one is."""
        while self._heap:
            kind, key, _, coordinates, generation = self._heap[0]
            track = self.tracks.get(coordinates)
            if track is None or track.generation != generation or track.in_flight:
                heapq.heappop(self._heap)
                continue
            if kind == _DUE and key > now.timestamp():
                return None, key - now.timestamp()
            heapq.heappop(self._heap)
            track.in_flight = True
            return track, 0.0
        return None, float("inf")

    def completed(self, result: CheckResult) -> Track | None:
        """Record a finished check; returns the track (None if the version left the inventory meanwhile)."""
        track = self.tracks.get(result.coordinates)
        if track is None:
            return None
        track.in_flight = False
        track.not_before = None
        if track.first_checked_at is None:
            track.first_checked_at = result.checked_at
        track.last_checked_at = result.checked_at
        track.last_outcome = result.outcome
        track.consecutive_failures = 0 if result.outcome is Outcome.MATCH else track.consecutive_failures + 1
        self._push(track)
        return track

    def postpone(self, coordinates: ArtifactCoordinates, until: dt.datetime) -> None:
        """A check whose result is not kept (a version still being uploaded): check it again at ``until``."""
        track = self.tracks.get(coordinates)
        if track is not None:
            track.in_flight = False
            track.not_before = until
            self._push(track)

    def abandoned(self, coordinates: ArtifactCoordinates) -> None:
        """A check that did not finish (shutdown): nothing recorded, the version stays as it was."""
        track = self.tracks.get(coordinates)
        if track is not None:
            track.in_flight = False
            self._push(track)

    def backlog(self, now: dt.datetime) -> int:
        """Versions due now (never checked or past their due time) and not being checked."""
        count = 0
        for track in self.tracks.values():
            if track.in_flight:
                continue
            due = self.due_at(track)
            if due is None or due <= now:
                count += 1
        return count

    # --- what the gauges show ---------------------------------------------------------------------

    def state_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for track in self.tracks.values():
            key = (track.state, track.item.coordinates.tenant)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def coverage(self, now: dt.datetime) -> tuple[float, float]:
        """(share of versions checked within the coverage window, age in seconds of the stalest)."""
        if not self.tracks:
            return 0.0, 0.0
        covered = 0
        oldest = 0.0
        horizon = now - self.coverage_window
        for track in self.tracks.values():
            stamp = track.last_checked_at or track.first_seen
            if track.last_checked_at is not None and track.last_checked_at >= horizon:
                covered += 1
            oldest = max(oldest, (now - stamp).total_seconds())
        return covered / len(self.tracks), oldest
