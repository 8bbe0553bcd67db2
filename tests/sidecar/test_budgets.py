"""Budgets against the registry, counted at the registry's door (a proxy in front of the real registry):
concurrent checks, requests per second and bytes per second."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.sidecar.conftest import Sidecar, row, write_inventory
from tests.support.proxy import CountingProxy

KIB = 1024


async def test_no_more_checks_at_once_than_the_concurrency(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    versions = [stores.dual_write("api", f"0.{n}")[0] for n in range(5)]
    write_inventory(inventory_file, [row(c) for c in versions])
    sidecar_config["schedule"]["concurrency"] = 2
    proxy.hold_blobs()
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def two_waiting() -> bool:
        return len(proxy.blobs()) == 2

    await sidecar.wait_for(two_waiting, "two checks to reach the registry")
    await asyncio.sleep(0.5)  # time for a third, were the limit not kept
    assert len(proxy.blobs()) == 2 and proxy.blobs_in_flight == 2
    assert (await sidecar.status())["coverage"]["in_flight"] == 2
    proxy.release_blobs()

    async def all_checked() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=stores.tenant)) == 5

    await sidecar.wait_for(all_checked, "every version to be checked")
    assert proxy.max_blobs_in_flight == 2 and len(proxy.blobs()) == 5
    assert await sidecar.stop() == 0


async def test_requests_per_second_hold_at_the_registry(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    versions = [stores.dual_write("batch", f"4.{n}")[0] for n in range(10)]
    write_inventory(inventory_file, [row(c) for c in versions])
    rps = 10.0
    sidecar_config["schedule"].update(concurrency=4, max_requests_per_second=rps)
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def all_checked() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=stores.tenant)) == 10

    await sidecar.wait_for(all_checked, "every version to be checked under the budget", within=20)
    assert await sidecar.stop() == 0

    seen = sorted(proxy.seen, key=lambda s: s.started)
    assert len(seen) >= 20  # a manifest and a blob per version, plus probes and flavour detection
    t0 = seen[0].started
    burst = max(rps, 1.0)  # TokenBucket's default burst: one second's worth
    for n, s in enumerate(seen, start=1):
        allowed = burst + rps * (s.started - t0) + 2  # +2: the first request may reach the proxy up to 0.2s late
        assert n <= allowed, f"{n} requests reached the registry within {s.started - t0:.2f}s (budget {rps}/s)"
    assert len(seen) > burst + 1, "the test sends enough requests for the budget to bind"


async def test_bytes_per_second_hold_at_the_registry(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    size = 384 * KIB
    versions = [stores.dual_write("media", f"2.{n}", size=size)[0] for n in range(8)]
    write_inventory(inventory_file, [row(c) for c in versions])
    bps = 1024 * KIB
    sidecar_config["schedule"].update(concurrency=1, max_bytes_per_second=bps)
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def all_checked() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=stores.tenant)) == 8

    await sidecar.wait_for(all_checked, "every version to be checked under the budget", within=20)
    assert await sidecar.stop() == 0

    blobs = sorted(proxy.blobs(), key=lambda s: s.started)
    assert len(blobs) == 8 and all(b.bytes >= size - 1024 for b in blobs)
    burst = max(bps / 4, 1 << 20)  # RegistryBudget: a quarter second, at least one 1 MiB chunk
    read = 0
    for b in blobs:  # one check at a time: a blob is requested only once the previous one is paid for
        allowed = burst + bps * (b.started - blobs[0].started) + 128 * KIB  # the first blob may arrive late
        assert read <= allowed, f"{read} bytes read within {b.started - blobs[0].started:.2f}s (budget {bps}/s)"
        read += b.bytes
    assert read > burst + bps, "the test moves enough bytes for the budget to bind"
