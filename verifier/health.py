"""Registry health: a /v2/ probe on an interval, as metrics and a short failure history for the status page.

Like blackbox_exporter, a probe returns a result that keeps its reason (never a bare bool), and
one method records it: ``artifact_parity_registry_up`` and ``artifact_parity_registry_probe_duration_seconds``.
The probe goes through the shared :class:`~verifier.stores.oci.RegistryTransport`, so it uses the same
credentials (a 401 means the configured credentials stopped working) and counts against the budget.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .errors import StoreError
from .metrics import Metrics
from .stores.oci import RegistryTransport

log = logging.getLogger("verifier.health")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    seconds: float
    at: dt.datetime
    reason: str | None = None  # a ReadErrorReason value (timeout, unreachable, unauthorized, …) or "internal"
    message: str | None = None  # one sentence, no credentials

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 6),
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "reason": self.reason,
            "message": self.message,
        }


class RegistryProber:
    """``probe_once()`` on demand, ``run_forever(interval)`` in the sidecar (``registry.probe_interval``)."""

    def __init__(self, transport: RegistryTransport, metrics: Metrics | None = None, *, history: int = 10) -> None:
        self.transport = transport
        self.metrics = metrics
        self.last: ProbeResult | None = None
        self.last_failure: ProbeResult | None = None
        self.last_success: ProbeResult | None = None
        self.failures: deque[ProbeResult] = deque(maxlen=history)
        self.probes = 0

    async def probe_once(self) -> ProbeResult:
        started = time.perf_counter()
        at = dt.datetime.now(dt.UTC)
        try:
            seconds = await self.transport.probe()
            result = ProbeResult(True, seconds, at)
        except StoreError as exc:
            reason = exc.reason.value if exc.reason is not None else exc.fault.value
            result = ProbeResult(False, time.perf_counter() - started, at, reason, str(exc))
        except Exception as exc:  # never let a probe bug kill the loop; say what happened
            log.exception("registry probe failed unexpectedly")
            result = ProbeResult(False, time.perf_counter() - started, at, "internal", repr(exc))
        self.record(result)
        return result

    def record(self, result: ProbeResult) -> None:
        """The one place where a probe becomes metrics and history."""
        self.probes += 1
        was_up = self.last.ok if self.last is not None else None
        self.last = result
        if result.ok:
            self.last_success = result
            if was_up is False:
                log.info("registry is reachable again (%.3fs)", result.seconds)
        else:
            self.last_failure = result
            self.failures.append(result)
            if was_up is not False:
                log.warning("registry probe failed (%s): %s", result.reason, result.message)
        if self.metrics is not None:
            self.metrics.registry_up.set(1 if result.ok else 0)
            self.metrics.registry_probe_duration.set(result.seconds)

    async def run_forever(self, interval_seconds: float) -> None:
        """Probe now and then every ``interval_seconds`` (measured start to start) until cancelled."""
        while True:
            started = time.monotonic()
            await self.probe_once()
            await asyncio.sleep(max(0.0, interval_seconds - (time.monotonic() - started)))

    def as_dict(self) -> dict[str, Any]:
        """For /status.json: the last probe, the last failure and the recent failures, newest first."""
        return {
            "up": self.last.ok if self.last is not None else None,
            "last": self.last.as_dict() if self.last else None,
            "last_success": self.last_success.as_dict() if self.last_success else None,
            "last_failure": self.last_failure.as_dict() if self.last_failure else None,
            "recent_failures": [r.as_dict() for r in reversed(self.failures)],
            "probes": self.probes,
        }
