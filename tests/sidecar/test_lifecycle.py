"""Restart and stop: the ledger keeps everything, a restart resumes without a re-check storm, and a
stop abandons unfinished checks without recording half a result."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.sidecar.conftest import Sidecar, row, value, write_inventory
from tests.support.proxy import CountingProxy
from verifier.ledger import SqliteLedger
from verifier.model import Outcome


async def test_a_restart_keeps_the_ledger_and_the_gauges_without_a_recheck_storm(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    good = [stores.dual_write("billing", v)[0] for v in ("3.0.0", "3.1.0")]
    bad = stores.coordinates("billing", "3.2.0")
    stores.put_file(bad, stores.jar("fs.jar"))
    stores.push(bad, stores.jar("oci.jar"))  # a different JAR: the stores disagree
    write_inventory(inventory_file, [row(c) for c in (*good, bad)])
    tenant = stores.tenant

    first: Sidecar = await start_sidecar(sidecar_config)

    async def three_checked() -> bool:
        s = await first.metrics()
        return sum(value(s, "artifact_parity_checks_total", outcome=o, tenant=tenant) or 0
                   for o in ("match", "mismatch")) == 3

    await first.wait_for(three_checked, "the first pass")
    assert await first.stop() == 0
    ledger_path = Path(sidecar_config["ledger"]["path"])
    async with SqliteLedger.open(ledger_path) as ledger:
        before = await ledger.latest()
        assert {c: s.outcome for c, s in before.items()} == {
            good[0]: Outcome.MATCH, good[1]: Outcome.MATCH, bad: Outcome.MISMATCH}

    proxy.reset()
    second: Sidecar = await start_sidecar(sidecar_config)

    async def gauges_restored() -> bool:
        s = await second.metrics()
        return (value(s, "artifact_parity_versions", state="match", tenant=tenant) == 2
                and value(s, "artifact_parity_versions", state="mismatch", tenant=tenant) == 1)

    await second.wait_for(gauges_restored, "the versions gauge to come back from the ledger", within=6)
    samples = await second.metrics()
    assert value(samples, "artifact_parity_versions", state="unverified", tenant=tenant) == 0
    assert value(samples, "artifact_parity_coverage_ratio") == 1.0
    status = await second.status()
    assert status["parity"]["mismatch"] == 1 and status["parity"]["unverified"] == 0
    assert [(r["version"], r["outcome"]) for r in status["recent_non_matches"]] == [("3.2.0", "mismatch")], \
        "the status page remembers the non-match from before the restart"
    assert status["coverage"]["backlog"] == 0

    await asyncio.sleep(2.5)  # a few dispatch rounds and a gauge cycle: nothing is due
    samples = await second.metrics()
    assert sum(value(samples, "artifact_parity_checks_total", outcome=o.value, tenant=tenant) or 0
               for o in Outcome) == 0, "no version is re-checked after a restart"
    assert proxy.manifests() == [] and proxy.blobs() == []
    assert await second.stop() == 0
    async with SqliteLedger.open(ledger_path) as ledger:
        for c in (*good, bad):
            assert len(await ledger.history(c)) == 1


async def test_stop_abandons_an_unfinished_check_without_recording_it(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    sidecar_config["schedule"]["shutdown_grace"] = "2s"
    c, _ = stores.dual_write("payments", "9.0.0")
    write_inventory(inventory_file, [row(c)])
    proxy.hold_blobs()
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def in_flight() -> bool:
        return (await sidecar.status())["coverage"]["in_flight"] == 1 and len(proxy.blobs()) == 1

    await sidecar.wait_for(in_flight, "the check to be in flight")
    assert (await sidecar.get("/readyz"))[0] == 200
    sidecar.service.stop()
    await asyncio.sleep(0.3)
    assert not sidecar.task.done(), "the in-flight check gets its grace period"
    assert (await sidecar.get("/readyz"))[0] == 503, "a stopping sidecar takes no new work and says so"
    assert (await sidecar.get("/healthz"))[0] == 200
    assert await asyncio.wait_for(sidecar.task, 10) == 0
    proxy.release_blobs()

    assert any("abandoned 1 unfinished check" in e["message"] for e in sidecar.logs.entries())
    ledger_path = Path(sidecar_config["ledger"]["path"])
    with sqlite3.connect(ledger_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM checks").fetchone() == (0,), "nothing half-recorded"
    async with SqliteLedger.open(ledger_path) as ledger:
        state = (await ledger.latest())[c]
        assert state.outcome is None and state.last_checked_at is None  # still unverified, known
