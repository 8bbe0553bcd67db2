"""The platform's PostgreSQL going away is not fatal: the sidecar keeps serving and checking what it
knows, says so in `artifact_parity_inventory_up` and /status (never in /readyz), and recovers by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.sidecar.conftest import AppDatabase, Sidecar, value
from tests.support.proxy import CountingProxy
from verifier.ledger import SqliteLedger


async def test_the_inventory_going_away_and_coming_back(
    stores: Stores, proxy: CountingProxy, app_db: AppDatabase, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    tenant = stores.tenant
    first = [stores.dual_write("shop", v)[0] for v in ("1.0", "1.1")]
    for c in first:
        await app_db.add(c)
    sidecar_config["inventory"] = {"source": "postgres", "dsn": app_db.dsn, "timeout_seconds": 3}
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def matched(n: int) -> Any:
        async def probe() -> bool:
            return (await sidecar.metric("artifact_parity_versions", state="match", tenant=tenant)) == n
        return probe

    await sidecar.wait_for(await matched(2), "the first pass")
    assert await sidecar.metric("artifact_parity_inventory_up") == 1

    await app_db.allow_login(False)  # the platform's database refuses the sidecar's role
    added_meanwhile, _ = stores.dual_write("shop", "2.0")
    await app_db.add(added_meanwhile)

    async def down() -> bool:
        return (await sidecar.metric("artifact_parity_inventory_up")) == 0

    await sidecar.wait_for(down, "artifact_parity_inventory_up to drop to 0")
    refreshed_before = await sidecar.metric("artifact_parity_inventory_refresh_timestamp_seconds")
    await asyncio.sleep(1.2)  # another refresh interval: it fails too
    status = await sidecar.status()
    assert status["inventory"]["up"] is False
    assert "inventory database unreachable" in status["inventory"]["error"]
    assert status["inventory"]["versions"] == 2 and status["parity"]["match"] == 2, "what it knew is kept"
    assert (await sidecar.get("/readyz"))[0] == 200, "the inventory's health never goes to /readyz"
    code, _, page = await sidecar.get("/status")
    assert code == 200 and "<span class=\"bad\">down</span>" in page and "inventory database unreachable" in page
    samples = await sidecar.metrics()
    assert value(samples, "artifact_parity_versions", state="match", tenant=tenant) == 2
    assert value(samples, "artifact_parity_inventory_refresh_timestamp_seconds") == refreshed_before

    await app_db.allow_login(True)

    async def back() -> bool:
        s = await sidecar.metrics()
        return (value(s, "artifact_parity_inventory_up") == 1
                and value(s, "artifact_parity_versions", state="match", tenant=tenant) == 3)

    await sidecar.wait_for(back, "the inventory to come back and the version added meanwhile to be checked")
    status = await sidecar.status()
    assert status["inventory"]["up"] is True and status["inventory"]["error"] is None
    assert (await sidecar.metric("artifact_parity_inventory_refresh_timestamp_seconds") or 0) > refreshed_before

    # a version deleted from the platform leaves the gauges, and the ledger marks it gone
    await app_db.remove(first[0])

    async def left() -> bool:
        s = await sidecar.metrics()
        return value(s, "artifact_parity_versions", state="match", tenant=tenant) == 2

    await sidecar.wait_for(left, "the deleted version to leave the versions gauge")
    assert (await sidecar.status())["inventory"]["versions"] == 2

    for where, text in (("logs", sidecar.logs.text()), ("/status", page),
                        ("/status.json", (await sidecar.get("/status.json"))[2]),
                        ("/metrics", (await sidecar.get("/metrics"))[2])):
        assert app_db.password not in text, f"the inventory DSN's password leaked into {where}"
    assert any(e["level"] == "warning" and "inventory unavailable" in e["message"] for e in sidecar.logs.entries())
    assert await sidecar.stop() == 0

    async with SqliteLedger.open(Path(sidecar_config["ledger"]["path"])) as ledger:
        states = await ledger.latest()
    assert states[first[0]].gone_at is not None, "the ledger knows the deleted version left the inventory"
    assert states[first[1]].known and states[added_meanwhile].known


async def test_a_restart_while_the_inventory_is_down_serves_what_the_ledger_knows(
    stores: Stores, proxy: CountingProxy, app_db: AppDatabase, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    tenant = stores.tenant
    good, _ = stores.dual_write("crm", "5.0")
    missing = stores.coordinates("crm", "5.1")
    stores.put_file(missing, stores.jar("only-on-disk.jar"))  # never pushed: missing_oci
    for c in (good, missing):
        await app_db.add(c)
    sidecar_config["inventory"] = {"source": "postgres", "dsn": app_db.dsn, "timeout_seconds": 3}
    first: Sidecar = await start_sidecar(sidecar_config)

    async def both_checked() -> bool:
        s = await first.metrics()
        return (value(s, "artifact_parity_versions", state="match", tenant=tenant) == 1
                and value(s, "artifact_parity_versions", state="missing_oci", tenant=tenant) == 1)

    await first.wait_for(both_checked, "the first pass")
    assert await first.stop() == 0

    await app_db.allow_login(False)
    proxy.reset()
    second: Sidecar = await start_sidecar(sidecar_config)

    async def served_from_ledger() -> bool:
        s = await second.metrics()
        return (value(s, "artifact_parity_inventory_up") == 0
                and value(s, "artifact_parity_versions", state="match", tenant=tenant) == 1
                and value(s, "artifact_parity_versions", state="missing_oci", tenant=tenant) == 1)

    await second.wait_for(served_from_ledger, "the gauges to show the ledger's versions while the inventory is down")
    status = await second.status()
    assert status["inventory"]["up"] is False
    assert status["parity"]["match"] == 1 and status["parity"]["missing_oci"] == 1
    assert (await second.get("/readyz"))[0] == 200
    gate = await second.gate()
    assert gate["verdict"] == "NO-GO" and [v["version"] for v in gate["blocking_versions"]] == ["5.1"]
    assert proxy.manifests() == [], "nothing is checked from the ledger's memory alone (rows may carry paths)"

    await app_db.allow_login(True)

    async def back() -> bool:
        return (await second.metric("artifact_parity_inventory_up")) == 1

    await second.wait_for(back, "the inventory to come back")
    samples = await second.metrics()
    assert value(samples, "artifact_parity_versions", state="match", tenant=tenant) == 1
    assert value(samples, "artifact_parity_versions", state="missing_oci", tenant=tenant) == 1
    assert await second.stop() == 0
