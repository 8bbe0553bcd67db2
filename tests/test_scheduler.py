"""The scheduler's ordering with an explicit clock: new first, back-off, coverage, stalest first, versions
leaving and coming back, abandoned checks, and a 100 000-version backlog."""

from __future__ import annotations

import datetime as dt
import heapq

import pytest

from verifier import scheduler as scheduler_module
from verifier.model import ArtifactCoordinates, CheckResult, InventoryItem, Outcome
from verifier.scheduler import RECHECK_FRACTION, PriorState, Scheduler

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
S = dt.timedelta(seconds=1)
MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
WINDOW = dt.timedelta(hours=24)


def c(version: str, app: str = "orders", tenant: str = "acme") -> ArtifactCoordinates:
    return ArtifactCoordinates(tenant, app, version)


def item(version: str, created: dt.datetime | None = None, **kw: str) -> InventoryItem:
    return InventoryItem(c(version, **kw), created_at=created)


def done(coords: ArtifactCoordinates, at: dt.datetime, outcome: Outcome = Outcome.MATCH) -> CheckResult:
    return CheckResult(coords, outcome, checked_at=at)


def make(**kw: dt.timedelta) -> Scheduler:
    return Scheduler(kw.get("coverage_window", WINDOW), kw.get("retry_after", MIN), kw.get("retry_max", HOUR))


def pick(s: Scheduler, now: dt.datetime) -> ArtifactCoordinates | None:
    track, _wait = s.next(now)
    return track.item.coordinates if track is not None else None


def drain(s: Scheduler, now: dt.datetime, outcome: Outcome = Outcome.MATCH) -> list[str]:
    """Pick and complete everything due at `now`, in order."""
    order = []
    while (coords := pick(s, now)) is not None:
        order.append(coords.version)
        s.completed(done(coords, now, outcome))
    return order


# --- new first -----------------------------------------------------------------------------------------


def test_never_checked_versions_come_first_newest_created_at_first() -> None:
    s = make()
    s.update_inventory([item("1.0", T0 - 3 * HOUR), item("3.0", T0 - HOUR), item("2.0", T0 - 2 * HOUR)], T0)
    assert [pick(s, T0).version for _ in range(3)] == ["3.0", "2.0", "1.0"]  # type: ignore[union-attr]
    assert s.next(T0) == (None, float("inf")), "all three in flight: nothing else to hand out"


def test_a_version_appearing_later_jumps_ahead_of_every_due_recheck() -> None:
    s = make()
    s.update_inventory([item(v, T0 - HOUR) for v in ("1", "2", "3")], T0)
    drain(s, T0)
    later = T0 + WINDOW  # all three are due again (stalest first) ...
    fresh = s.update_inventory([*(item(v, T0 - HOUR) for v in ("1", "2", "3")), item("4", later)], later)
    assert [i.coordinates.version for i in fresh] == ["4"]
    assert pick(s, later) == c("4"), "... yet the new version is checked first"
    assert s.tracks[c("4")].arrived_while_running and not s.tracks[c("1")].arrived_while_running


def test_without_created_at_first_seen_orders_new_versions() -> None:
    s = make()
    s.update_inventory([item("old")], T0)
    s.update_inventory([item("old"), item("new")], T0 + MIN)
    assert pick(s, T0 + MIN) == c("new")
    assert pick(s, T0 + MIN) == c("old")


# --- re-checks -----------------------------------------------------------------------------------------


def test_a_match_is_due_again_after_four_fifths_of_the_coverage_window() -> None:
    s = make()
    s.update_inventory([item("1")], T0)
    drain(s, T0)
    due = T0 + WINDOW * RECHECK_FRACTION
    assert s.due_at(s.tracks[c("1")]) == due
    track, wait = s.next(due - 10 * S)
    assert track is None and wait == pytest.approx(10.0)
    assert s.backlog(due - S) == 0 and s.backlog(due) == 1
    assert pick(s, due) == c("1")


def test_non_matches_back_off_doubling_up_to_retry_max() -> None:
    s = make(retry_after=MIN, retry_max=10 * MIN)
    s.update_inventory([item("bad")], T0)
    now = T0
    waits = []
    for _ in range(7):
        coords = pick(s, now)
        assert coords == c("bad")
        s.completed(done(coords, now, Outcome.MISMATCH))
        due = s.due_at(s.tracks[coords])
        assert due is not None
        waits.append((due - now) / MIN)
        assert s.next(due - S)[0] is None, "not re-checked before its back-off has passed"
        now = due
    assert waits == [1, 2, 4, 8, 10, 10, 10]
    assert s.tracks[c("bad")].consecutive_failures == 7

    s.completed(done(pick(s, now), now, Outcome.MATCH))  # type: ignore[arg-type]
    assert s.tracks[c("bad")].consecutive_failures == 0
    assert s.due_at(s.tracks[c("bad")]) == now + WINDOW * RECHECK_FRACTION, "a match resets the back-off"


def test_the_back_off_never_exceeds_the_recheck_of_a_match() -> None:
    s = make(coverage_window=HOUR, retry_after=MIN, retry_max=WINDOW)
    s.update_inventory([item("err")], T0)
    now = T0
    for _ in range(12):
        s.completed(done(pick(s, now), now, Outcome.ERROR))  # type: ignore[arg-type]
        now = s.due_at(s.tracks[c("err")])  # type: ignore[assignment]
    assert now - s.tracks[c("err")].last_checked_at == HOUR * RECHECK_FRACTION  # type: ignore[operator]


def test_due_versions_come_stalest_first_and_non_matches_ahead_of_their_turn() -> None:
    s = make()
    s.update_inventory([item(v) for v in ("a", "b", "c", "d")], T0)
    assert len([pick(s, T0) for _ in range(4)]) == 4
    for n, v in enumerate(("c", "a", "d", "b")):  # checked in this order, a minute apart
        s.completed(done(c(v), T0 + n * MIN, Outcome.MISMATCH if v == "b" else Outcome.MATCH))
    # b, the last checked but a mismatch, is re-checked after retry_after; the matches stalest first
    assert pick(s, T0 + 5 * MIN) == c("b")
    later = T0 + WINDOW
    assert [pick(s, later).version for _ in range(3)] == ["c", "a", "d"]  # type: ignore[union-attr]


# --- the inventory changes --------------------------------------------------------------------------------


def test_a_version_leaving_the_inventory_is_no_longer_scheduled_or_counted() -> None:
    s = make()
    s.update_inventory([item("1"), item("2")], T0)
    s.update_inventory([item("2")], T0 + S)
    assert pick(s, T0 + S) == c("2")
    assert pick(s, T0 + S) is None
    assert s.state_counts() == {("unverified", "acme"): 1}
    assert s.completed(done(c("1"), T0 + S)) is None, "a late result for a gone version changes nothing"
    assert c("1") not in s.tracks


def test_a_version_that_leaves_and_comes_back_keeps_its_own_turn() -> None:
    s = make()
    s.update_inventory([item("1"), item("2")], T0)
    s.update_inventory([item("2")], T0 + S)  # 1 leaves before it was picked, its entry still queued …
    checked = {c("1"): PriorState(Outcome.MATCH, T0 + S, T0 + S, T0)}  # … another process checked it …
    s.update_inventory([item("1"), item("2")], T0 + 2 * S, checked)  # … and it comes back
    assert pick(s, T0 + 2 * S) == c("2")
    assert pick(s, T0 + 2 * S) is None, "the old queued entry does not pass for the returning version's"
    due = T0 + S + WINDOW * RECHECK_FRACTION
    assert s.next(T0 + 2 * S)[1] == pytest.approx((due - (T0 + 2 * S)).total_seconds())
    assert pick(s, due) == c("1") and pick(s, due) is None, "handed out once, when due"


def test_backlog_counts_what_is_due_and_not_in_flight() -> None:
    s = make()
    s.update_inventory([item("1"), item("2"), item("3")], T0)
    assert s.backlog(T0) == 3
    pick(s, T0)
    assert s.backlog(T0) == 2, "a version being checked is in flight, not due"


def test_a_restart_resumes_from_the_ledger_without_a_recheck_storm() -> None:
    s = make()
    prior = {
        c("ok"): PriorState(Outcome.MATCH, T0 - HOUR, T0 - 2 * HOUR, T0 - 3 * HOUR),
        c("bad"): PriorState(Outcome.MISMATCH, T0 - 30 * S, T0 - 2 * HOUR, T0 - 3 * HOUR, consecutive_failures=2),
        c("stale"): PriorState(Outcome.MATCH, T0 - WINDOW, T0 - WINDOW, T0 - WINDOW),
    }
    s.update_inventory([item("ok"), item("bad"), item("stale"), item("new")], T0, prior)
    assert s.tracks[c("ok")].first_seen == T0 - 3 * HOUR
    assert [pick(s, T0).version for _ in range(2)] == ["new", "stale"]  # type: ignore[union-attr]
    assert pick(s, T0) is None, "the match checked an hour ago and the non-match in back-off wait"
    assert s.due_at(s.tracks[c("bad")]) == T0 - 30 * S + 2 * MIN, "the back-off resumes at its step"
    assert not s.tracks[c("new")].arrived_while_running, "the first inventory read measures no lag"


def test_versions_from_the_ledger_stand_in_until_the_first_inventory_read() -> None:
    s = make()
    prior = {c("1"): PriorState(Outcome.MATCH, T0 - HOUR, T0 - HOUR, T0 - HOUR)}
    s.update_inventory([item("1")], T0, prior, from_ledger=True)
    assert s.state_counts() == {("match", "acme"): 1}
    s.update_inventory([item("1"), item("2")], T0 + S)
    assert not s.tracks[c("2")].arrived_while_running, "still the first real read: no lag for what it lists"
    s.update_inventory([item("1"), item("2"), item("3")], T0 + 2 * S)
    assert s.tracks[c("3")].arrived_while_running


def test_an_abandoned_check_keeps_the_version_as_it_was_and_due() -> None:
    s = make()
    s.update_inventory([item("1", T0), item("2", T0 - HOUR)], T0)
    assert pick(s, T0) == c("1")
    assert pick(s, T0) == c("2")
    assert pick(s, T0) is None, "a version in flight is not handed out twice"
    s.abandoned(c("1"))
    track = s.tracks[c("1")]
    assert (track.in_flight, track.last_outcome, track.last_checked_at) == (False, None, None)
    assert pick(s, T0) == c("1"), "an abandoned check is due again at once"
    s.abandoned(c("gone"))  # a version that left meanwhile: nothing to do


def test_coverage_and_oldest_check_age() -> None:
    s = make(coverage_window=HOUR)
    s.update_inventory([item("1"), item("2"), item("3")], T0)
    assert s.coverage(T0 + MIN) == (0.0, 60.0)
    s.next(T0)
    s.completed(done(c("1"), T0 + MIN))
    s.next(T0)
    s.completed(done(c("2"), T0 + 2 * HOUR))
    ratio, oldest = s.coverage(T0 + 2 * HOUR)
    assert ratio == pytest.approx(1 / 3) and oldest == (2 * HOUR).total_seconds()


# --- a large backlog ---------------------------------------------------------------------------------------


class _CountingHeap:
    def __init__(self) -> None:
        self.pushes = 0
        self.pops = 0

    def heappush(self, heap: list, entry: object) -> None:  # type: ignore[type-arg]
        self.pushes += 1
        heapq.heappush(heap, entry)

    def heappop(self, heap: list) -> object:  # type: ignore[type-arg]
        self.pops += 1
        return heapq.heappop(heap)


def test_a_backlog_of_100_000_versions_is_picked_one_heap_pop_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 100_000
    counting = _CountingHeap()
    monkeypatch.setattr(scheduler_module, "heapq", counting)
    s = make()
    items = [InventoryItem(c(f"1.{i}", app=f"app{i % 500}", tenant=f"t{i % 7}"), created_at=T0 - i * S)
             for i in range(n)]
    s.update_inventory(items, T0)
    assert counting.pushes == n and len(s._heap) == n

    counting.pops = 0
    first = [pick(s, T0) for _ in range(1000)]
    assert [x.version for x in first[:3]] == ["1.0", "1.1", "1.2"]  # type: ignore[union-attr]
    assert counting.pops == 1000, "each pick pops exactly one entry: no scan of the backlog"

    counting.pushes = 0
    s.update_inventory(items, T0 + MIN)  # an unchanged inventory read pushes nothing
    assert counting.pushes == 0
    for coords in first:
        s.completed(done(coords, T0 + MIN))  # type: ignore[arg-type]
    assert counting.pushes == 1000 and len(s._heap) == n

    counting.pops = 0
    rest = drain(s, T0 + MIN)
    assert len(rest) == n - 1000 and len(set(rest)) == n - 1000
    assert counting.pops == n - 1000, "one pop per pick through the whole backlog"
    assert s.backlog(T0 + MIN) == 0
    assert sum(s.state_counts().values()) == n

    # a tenth of the inventory leaves: counted out at once, no heap work until their entries surface
    counting.pushes = counting.pops = 0
    s.update_inventory(items[: n - n // 10], T0 + 2 * MIN)
    assert sum(s.state_counts().values()) == n - n // 10
    assert (counting.pushes, counting.pops) == (0, 0)


def test_a_postponed_version_waits_until_its_time_then_keeps_its_new_first_rank_after() -> None:
    s = make()
    s.update_inventory([item("1.0", T0), item("0.9", T0 - HOUR)], T0)
    young = pick(s, T0)
    assert young is not None and young.version == "1.0"
    s.postpone(young, T0 + dt.timedelta(seconds=30))
    assert s.tracks[young].state == "unverified" and not s.tracks[young].in_flight
    assert pick(s, T0).version == "0.9"  # type: ignore[union-attr]
    assert s.next(T0 + dt.timedelta(seconds=29)) == (None, pytest.approx(1.0))
    assert pick(s, T0 + dt.timedelta(seconds=30)) == young
    s.completed(done(young, T0 + dt.timedelta(seconds=30)))
    assert s.tracks[young].not_before is None and s.tracks[young].state == "match"


def test_a_long_retry_after_and_many_failures_never_overflow() -> None:
    s = make(retry_after=dt.timedelta(days=3), retry_max=dt.timedelta(days=30))
    s.coverage_window = dt.timedelta(days=3650)
    s.update_inventory([item("1.0", T0)], T0)
    coords = pick(s, T0)
    assert coords is not None
    for n in range(40):  # 2**39 × 3 days would not fit a timedelta
        s.completed(done(coords, T0, Outcome.ERROR))
        assert s.due_at(s.tracks[coords]) == T0 + dt.timedelta(days=min(30, 3 * 2 ** n))
        s.tracks[coords].in_flight = True
