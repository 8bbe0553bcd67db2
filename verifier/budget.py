"""Rate budgets against the registry, so that verification never crowds out production traffic."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable

# Seconds the current task spent waiting on a budget, so that latency metrics measure the registry,
# not our own throttle. A list so that the value set in a task is shared with what it awaits.
_throttled: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("throttled", default=None)


def track_throttle() -> Callable[[], float]:
    """Start counting budget waits in this task; returns a function giving the seconds waited so far."""
    box = [0.0]
    _throttled.set(box)
    return lambda: box[0]


class TokenBucket:
    """Allows ``rate`` units per second on average with bursts up to ``burst``; rate 0 means no limit.

    A request larger than the burst is let through once the bucket is full and leaves it in debt, so
    a big blob is paced by the time it costs rather than refused.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> None:
        if self.unlimited or amount <= 0:
            return
        started = time.monotonic()
        try:
            await self._acquire(amount)
        finally:
            box = _throttled.get()
            if box is not None:
                box[0] += time.monotonic() - started

    async def _acquire(self, amount: float) -> None:
        async with self._lock:  # first come, first served
            self._refill()
            needed = min(amount, self.burst)
            while self._tokens < needed:
                await asyncio.sleep((needed - self._tokens) / self.rate)
                self._refill()
            self._tokens -= amount


class RegistryBudget:
    """Requests per second and bytes per second against the registry, shared by every check."""

    def __init__(self, requests_per_second: float = 0, bytes_per_second: float = 0) -> None:
        self.requests = TokenBucket(requests_per_second)
        # a burst of a quarter second (at least one 1 MiB chunk) keeps the pacing smooth
        self.bytes = TokenBucket(bytes_per_second, burst=max(bytes_per_second / 4, 1 << 20))

    async def request(self) -> None:
        await self.requests.acquire(1)

    async def bytes_read(self, amount: int) -> None:
        await self.bytes.acquire(amount)
