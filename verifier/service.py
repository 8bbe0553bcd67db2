"""`parity-verifier run`: the sidecar's tasks around one scheduler, one ledger and one registry session.

Tasks: inventory refresh, N check workers, gauges, registry probe, Zot scan/signature refresh, gate,
ledger pruning, and the HTTP server. A failing inventory or registry never stops the sidecar: it keeps
serving what it knows, says so in metrics and /status, and recovers by itself. SIGTERM stops new work,
lets in-flight checks finish within a grace period (or abandons them unrecorded) and closes the ledger.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import signal
from typing import Any

from . import __version__
from .config import Settings
from .errors import SourceUnavailable
from .gate import GateVerdict, apply_to_metrics, evaluate
from .health import RegistryProber
from .inventory import inventory_source
from .ledger import Ledger, open_ledger, retention
from .logs import log_result
from .metrics import Metrics
from .model import ArtifactCoordinates, CheckResult, InventoryItem, Outcome
from .scheduler import PriorState, Scheduler
from .wiring import make_checker, make_transport
from .zot import ZotMonitor

log = logging.getLogger("verifier.service")

_MISSING = frozenset({Outcome.MISSING_OCI, Outcome.MISSING_FILESYSTEM, Outcome.MISSING_BOTH})

GAUGE_INTERVAL_SECONDS = 2.0
GATE_INTERVAL_SECONDS = 30.0
GATE_MIN_INTERVAL_SECONDS = 2.0
PRUNE_INTERVAL_SECONDS = 3600.0
RECENT_LIMIT = 50


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Service:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(tenant_label=settings.metrics.tenant_label,
                                          max_tenants=settings.metrics.max_tenants)
        self.scheduler = Scheduler(settings.schedule.coverage_window, settings.schedule.retry_after,
                                   settings.schedule.retry_max)
        self.started_at = utcnow()
        self.ledger: Ledger | None = None
        self.transport = make_transport(settings)
        self.checker = make_checker(settings, self.transport)
        self.inventory = inventory_source(settings)
        self.inventory_status: dict[str, Any] = {"source": settings.inventory.source, "up": None,
                                                 "last_refresh": None, "error": None, "versions": 0}
        self.prober = RegistryProber(self.transport, self.metrics)
        self.zot = ZotMonitor(
            self.transport, repository_template=settings.registry.repository, tag_template=settings.registry.tag,
            batch_size=settings.zot.batch_size, cosign_public_key=settings.zot.cosign_public_key,
            require_signatures=settings.zot.require_signatures, cosign_concurrency=settings.schedule.concurrency,
        )
        self.metrics.signatures_required.set(1 if settings.zot.require_signatures else 0)
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_LIMIT)
        self.gate_verdict: GateVerdict | None = None
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._inventory_loaded = asyncio.Event()
        self._gate_due = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self.server_up = False

    # --- readiness ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The sidecar itself: config loaded, ledger open, server up. Never the registry or inventory."""
        return self.ledger is not None and self.server_up and not self.stopping.is_set()

    # --- lifecycle ----------------------------------------------------------------------------------

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        from .server import start_server

        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        async with open_ledger(self.settings) as ledger, self.transport:
            self.ledger = ledger
            for entry in reversed(await ledger.recent_non_matches(RECENT_LIMIT)):
                self._remember(entry)
            runner = await start_server(self)
            self.server_up = True
            log.info("parity-verifier %s serving on %s", __version__, self.settings.server.listen)
            tasks = [
                asyncio.create_task(self._inventory_loop(), name="inventory"),
                asyncio.create_task(self._dispatch_loop(), name="dispatch"),
                asyncio.create_task(self._gauge_loop(), name="gauges"),
                asyncio.create_task(self.prober.run_forever(
                    self.settings.registry.probe_interval.total_seconds()), name="probe"),
                asyncio.create_task(self._gate_loop(), name="gate"),
                asyncio.create_task(self._prune_loop(), name="prune"),
                asyncio.create_task(self._zot_loop(), name="zot"),
            ]
            try:
                await self.stopping.wait()
            finally:
                log.info("stopping: no new checks; %d in flight", len(self._in_flight))
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._drain()
                self.server_up = False
                await runner.cleanup()
                self.ledger = None
        log.info("stopped cleanly")
        return 0

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        grace = self.settings.schedule.shutdown_grace.total_seconds()
        done, pending = await asyncio.wait(self._in_flight, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("abandoned %d unfinished checks (nothing recorded for them)", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    # --- inventory ----------------------------------------------------------------------------------

    async def refresh_inventory(self) -> bool:
        assert self.ledger is not None
        try:
            items = await self.inventory.load()
        except SourceUnavailable as exc:
            self.inventory_status.update(up=False, error=str(exc))
            self.metrics.inventory_up.set(0)
            if not self._inventory_loaded.is_set() and not self.scheduler.tracks:
                await self._resume_from_ledger()
            log.warning("inventory unavailable, keeping the %d versions known: %s",
                        len(self.scheduler.tracks), exc)
            return False
        now = utcnow()
        prior: dict[Any, PriorState] = {}
        listed = {i.coordinates for i in items}
        if not self._inventory_loaded.is_set() or listed != self.scheduler.tracks.keys():
            # new versions or gone ones: the ledger learns both (first seen, gone_at), and the new ones
            # resume from what it remembers
            await self.ledger.observe(items, now)
            states = await self.ledger.latest()
            prior = {c: PriorState(s.outcome, s.last_checked_at, s.first_checked_at, s.first_seen,
                                   s.consecutive_failures) for c, s in states.items()}
        fresh = self.scheduler.update_inventory(items, now, prior)
        self.metrics.declare_tenants({i.coordinates.tenant for i in items})
        self.inventory_status.update(up=True, error=None, last_refresh=now.isoformat(timespec="seconds"), versions=len(items))
        self.metrics.inventory_up.set(1)
        self.metrics.inventory_refresh_timestamp.set(now.timestamp())
        if fresh and self._inventory_loaded.is_set():
            log.info("%d new versions in the inventory: checking them first", len(fresh))
        self._inventory_loaded.set()
        self._wake.set()
        return True

    async def _resume_from_ledger(self) -> None:
        """The inventory is down at start: serve what the ledger knows (gauges, /status, gate) until it
        answers. Nothing is checked meanwhile: the ledger does not keep a row's own path or sha256."""
        assert self.ledger is not None
        states = await self.ledger.latest()
        known = [InventoryItem(c, created_at=s.created_at) for c, s in states.items() if s.known]
        if not known:
            return
        prior = {c: PriorState(s.outcome, s.last_checked_at, s.first_checked_at, s.first_seen,
                               s.consecutive_failures) for c, s in states.items()}
        self.scheduler.update_inventory(known, utcnow(), prior, from_ledger=True)
        self.metrics.declare_tenants({i.coordinates.tenant for i in known})
        self.inventory_status.update(versions=len(known))
        self.update_gauges()

    async def _inventory_loop(self) -> None:
        interval = self.settings.schedule.inventory_refresh.total_seconds()
        while not self.stopping.is_set():
            try:
                await self.refresh_inventory()
            except Exception:  # e.g. the ledger failing: never end the loop, try again next time
                log.exception("inventory refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)

    # --- checks -------------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        concurrency = self.settings.schedule.concurrency
        slots = asyncio.Semaphore(concurrency)
        await self._inventory_loaded.wait()
        while not self.stopping.is_set():
            await slots.acquire()
            if self.stopping.is_set():
                slots.release()
                return
            track, wait = self.scheduler.next(utcnow())
            if track is None:
                slots.release()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, 60.0))
                continue
            task = asyncio.create_task(self._check(track.item), name=f"check {track.item.coordinates}")
            self._in_flight.add(task)

            def finished(t: asyncio.Task[None]) -> None:
                self._in_flight.discard(t)
                slots.release()

            task.add_done_callback(finished)

    async def _check(self, item: InventoryItem) -> None:
        assert self.ledger is not None
        try:
            result = await self.checker.check(item)
        except asyncio.CancelledError:
            self.scheduler.abandoned(item.coordinates)
            raise
        if self._unsettled(result):
            return
        await asyncio.shield(self._record(result))

    def _unsettled(self, result: CheckResult) -> bool:
        """A never-checked version missing from a store while younger than `schedule.settle_time`.

        During dual-write a row can appear before both uploads land; recording that as `missing_*`
        would make the gate NO-GO for a whole window. It is checked again once settled instead.
        """
        settle = self.settings.schedule.settle_time
        track = self.scheduler.tracks.get(result.coordinates)
        if not settle or track is None or track.last_outcome is not None or result.outcome not in _MISSING:
            return False
        settled_at = (track.item.created_at or track.first_seen) + settle
        now = utcnow()
        if settled_at <= now:
            return False
        retry = min(settled_at, now + max(settle / 4, dt.timedelta(seconds=1)))
        log.info("%s is %s but only %ds old: checking again at %s before recording it", result.coordinates,
                 result.outcome.value, (now - (track.item.created_at or track.first_seen)).total_seconds(),
                 retry.isoformat(timespec="seconds"))
        self.scheduler.postpone(result.coordinates, retry)
        self._wake.set()
        return True

    async def _record(self, result: CheckResult) -> None:
        assert self.ledger is not None
        try:
            await self.ledger.record(result)
        except Exception as exc:  # the check still happened: show it, keep the version's cadence
            log.error("could not record the check of %s in the ledger: %s", result.coordinates, exc)
        before = self.scheduler.tracks.get(result.coordinates)
        previous = before.last_outcome if before is not None else None
        track = self.scheduler.completed(result)
        if previous is not result.outcome and not (previous is None and result.outcome is Outcome.MATCH):
            self._gate_due.set()  # a version went bad or recovered: the gate gauges follow promptly
        self.metrics.record_check(result)
        if track is not None and track.arrived_while_running and track.first_checked_at == result.checked_at:
            origin = track.item.created_at or track.first_seen
            self.metrics.verify_lag.observe(max(0.0, (result.checked_at - origin).total_seconds()))
        if result.outcome is not Outcome.MATCH:
            self._remember({**result.as_dict(), "checked_at": result.checked_at.isoformat(timespec="seconds")})
            log_result(log, result)
        self._wake.set()

    def _remember(self, entry: dict[str, Any]) -> None:
        """Most recent non-matches, one entry per version (its latest), newest first."""
        key = (entry["tenant"], entry["app"], entry["version"])
        with contextlib.suppress(TypeError, ValueError):
            entry = {**entry, "checked_at": dt.datetime.fromisoformat(entry["checked_at"]).isoformat(timespec="seconds")}
        kept = [e for e in self.recent if (e["tenant"], e["app"], e["version"]) != key]
        self.recent = collections.deque([entry, *kept], maxlen=RECENT_LIMIT)

    # --- gauges, probe, gate, prune, zot -----------------------------------------------------------

    def update_gauges(self) -> None:
        now = utcnow()
        self.metrics.set_version_states(self.scheduler.state_counts())
        ratio, oldest = self.scheduler.coverage(now)
        self.metrics.coverage_ratio.set(ratio)
        self.metrics.oldest_check_age.set(oldest)

    async def _gauge_loop(self) -> None:
        while not self.stopping.is_set():
            self.update_gauges()
            await asyncio.sleep(GAUGE_INTERVAL_SECONDS)

    async def evaluate_gate(self) -> GateVerdict:
        assert self.ledger is not None
        items = [t.item for t in self.scheduler.tracks.values()] if self._inventory_loaded.is_set() else None
        verdict = await evaluate(self.ledger, items, self.settings, utcnow())
        apply_to_metrics(verdict, self.metrics)
        self.gate_verdict = verdict
        return verdict

    async def _gate_loop(self) -> None:
        """Every GATE_INTERVAL_SECONDS, and sooner (at most every GATE_MIN_INTERVAL_SECONDS) when a
        version changed state, so that the gate gauges say what GET /gate says."""
        while not self.stopping.is_set():
            self._gate_due.clear()
            try:
                await self.evaluate_gate()
            except Exception:
                log.exception("gate evaluation failed")
            await asyncio.sleep(GATE_MIN_INTERVAL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gate_due.wait(), GATE_INTERVAL_SECONDS - GATE_MIN_INTERVAL_SECONDS)

    async def _prune_loop(self) -> None:
        assert self.ledger is not None
        keep = retention(self.settings)
        while not self.stopping.is_set():
            try:
                await self.ledger.prune(utcnow() - keep)
            except Exception:
                log.exception("ledger pruning failed")
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    async def _zot_loop(self) -> None:
        """Scan and signature status on its own slower interval, once the inventory is known. The
        monitor re-detects the registry's flavour on every refresh; a plain registry says `unavailable`."""
        await self._inventory_loaded.wait()
        await self.zot.run_forever(
            lambda: [t.item for t in self.scheduler.tracks.values()], self.metrics,
            self.settings.zot.scan_refresh.total_seconds(),
            first_seen=lambda: {c: t.first_seen for c, t in self.scheduler.tracks.items()},
        )

    # --- what /status shows -------------------------------------------------------------------------

    def _state_now(self, entry: dict[str, Any]) -> str:
        track = self.scheduler.tracks.get(ArtifactCoordinates(entry["tenant"], entry["app"], entry["version"]))
        return track.state if track is not None else "gone"

    def _gate_status(self) -> dict[str, Any] | None:
        if self.gate_verdict is None:
            return None
        document = self.gate_verdict.as_dict()
        for condition, result in zip(document["conditions"], self.gate_verdict.conditions, strict=True):
            condition.update(result.shown())
        return document

    def status(self) -> dict[str, Any]:
        now = utcnow()
        counts: dict[str, int] = collections.Counter()
        for (state, _tenant), n in self.scheduler.state_counts().items():
            counts[state] += n
        ratio, oldest = self.scheduler.coverage(now)
        return {
            "version": __version__,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "now": now.isoformat(timespec="seconds"),
            "ready": self.ready,
            "inventory": dict(self.inventory_status),
            "registry": {
                "url": self.settings.registry.url,
                "up": self.prober.last.ok if self.prober.last is not None else None,
                "probe_seconds": round(self.prober.last.seconds, 4) if self.prober.last is not None else None,
                "error": self.prober.last.message if self.prober.last and not self.prober.last.ok else None,
                "last_failure": self.prober.last_failure.as_dict() if self.prober.last_failure else None,
                "flavour": self.zot.flavour.as_dict() if self.zot.flavour is not None else None,
            },
            "parity": {state: counts.get(state, 0) for state in
                       (*(o.value for o in Outcome), "unverified")},
            "coverage": {"ratio": round(ratio, 4), "window_seconds": self.settings.schedule.coverage_window
                         .total_seconds(), "oldest_check_age_seconds": round(oldest, 1),
                         "backlog": self.scheduler.backlog(now), "in_flight": len(self._in_flight)},
            "budgets": {"concurrency": self.settings.schedule.concurrency,
                        "max_bytes_per_second": self.settings.schedule.max_bytes_per_second,
                        "max_requests_per_second": self.settings.schedule.max_requests_per_second},
            "recent_non_matches": [{**e, "state_now": self._state_now(e)} for e in self.recent],
            "gate": self._gate_status(),
            "supply_chain": self.zot.snapshot.as_dict(versions=False) if self.zot.snapshot is not None else None,
        }


async def run_service(settings: Settings) -> int:
    return await Service(settings).run()
