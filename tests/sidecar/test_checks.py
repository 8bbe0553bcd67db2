"""The running sidecar finds what a user cares about: a planted mismatch, a new version first."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.sidecar.conftest import AppDatabase, Sidecar, row, value, write_inventory
from tests.support.jars import flip_byte
from tests.support.proxy import CountingProxy


async def test_a_planted_mismatch_shows_in_metrics_status_and_one_log_line(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    versions = [stores.dual_write("orders", v)[0] for v in ("1.0.0", "1.1.0", "1.2.0")]
    write_inventory(inventory_file, [row(c) for c in versions])
    sidecar_config["schedule"]["coverage_window"] = "3s"  # a match is re-checked after 0.8 × 3s
    sidecar: Sidecar = await start_sidecar(sidecar_config)
    tenant = stores.tenant

    async def all_match() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=tenant)) == 3

    await sidecar.wait_for(all_match, "the first pass to find three matches")

    bad = versions[1]
    registry = stores.registry
    flip_byte(registry.blob_file(registry.jar_layer_digest(stores.repository(bad), f"v{bad.version}")))
    planted = time.monotonic()

    async def mismatch_counted() -> bool:
        return (await sidecar.metric("artifact_parity_checks_total", outcome="mismatch", tenant=tenant)) == 1

    await sidecar.wait_for(mismatch_counted, "the re-check to count a mismatch", within=8)
    assert time.monotonic() - planted < 3 + 2, "found within the scheduling interval (0.8 × coverage window)"

    async def gauge_says_mismatch() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="mismatch", tenant=tenant)) == 1

    await sidecar.wait_for(gauge_says_mismatch, "the versions gauge to show the mismatch", within=4)
    samples = await sidecar.metrics()
    assert value(samples, "artifact_parity_versions", state="match", tenant=tenant) == 2
    assert value(samples, "artifact_parity_faults_total", fault="oci_blob_digest_mismatch", tenant=tenant) == 1
    assert value(samples, "artifact_parity_faults_total", fault="stores_differ", tenant=tenant) == 0

    status = await sidecar.status()
    assert status["parity"]["mismatch"] == 1 and status["parity"]["match"] == 2
    latest = status["recent_non_matches"][0]
    assert (latest["app"], latest["version"], latest["outcome"], latest["wrong_side"]) == \
        ("orders", "1.1.0", "mismatch", "oci")
    assert "oci_blob_digest_mismatch" in latest["faults"]

    code, headers, page = await sidecar.get("/status")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert f"{tenant}/orders 1.1.0" in page
    assert "oci_blob_digest_mismatch" in page and "<td class='bad'>mismatch</td>" in page

    # one JSON log line per non-match, with its coordinates and faults
    non_matches = [e for e in sidecar.logs.entries() if e.get("outcome") not in (None, "match")]
    assert len(non_matches) == 1, non_matches
    line = non_matches[0]
    assert (line["tenant"], line["app"], line["version"]) == (tenant, "orders", "1.1.0")
    assert line["faults"] == latest["faults"] and line["wrong_side"] == "oci" and line["level"] == "warning"

    # the registry password appears nowhere a person or a scraper can see
    password = registry.password
    _, _, metrics_text = await sidecar.get("/metrics")
    _, _, status_text = await sidecar.get("/status.json")
    _, _, gate_text = await sidecar.get("/gate")
    for where, text in (("logs", sidecar.logs.text()), ("/status", page), ("/status.json", status_text),
                        ("/metrics", metrics_text), ("/gate", gate_text)):
        assert password not in text, f"the registry password leaked into {where}"
    assert await sidecar.stop() == 0


async def test_a_new_inventory_row_is_checked_before_older_ones(
    stores: Stores, proxy: CountingProxy, app_db: AppDatabase, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    now = dt.datetime.now(dt.UTC)
    old = []
    for n in range(5):  # created 5, 4, … 1 days ago
        c, _ = stores.dual_write("orders", f"1.{n}.0")
        await app_db.add(c, now - dt.timedelta(days=5 - n))
        old.append(c)
    sidecar_config["inventory"] = {"source": "postgres", "dsn": app_db.dsn}
    sidecar_config["schedule"]["concurrency"] = 1
    proxy.hold_blobs()  # the first check stays in flight while the platform adds a version
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def first_in_flight() -> bool:
        return len(proxy.blobs()) == 1

    await sidecar.wait_for(first_in_flight, "the first check to reach the registry")
    new, _ = stores.dual_write("orders", "2.0.0")
    await app_db.add(new)  # created now

    async def refreshed() -> bool:
        return (await sidecar.status())["inventory"]["versions"] == 6

    await sidecar.wait_for(refreshed, "the inventory refresh to list the new version")
    proxy.release_blobs()

    async def all_checked() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=stores.tenant)) == 6

    await sidecar.wait_for(all_checked, "every version to be checked")
    ref = lambda c: f"{stores.repository(c)}:v{c.version}"  # noqa: E731
    assert proxy.manifests() == [ref(old[4]), ref(new), ref(old[3]), ref(old[2]), ref(old[1]), ref(old[0])], \
        "newest first: the one in flight, then the new row ahead of every older one"

    samples = await sidecar.metrics()
    # the lag is measured for versions that appeared while running: the new one only
    assert value(samples, "artifact_parity_verify_lag_seconds_count") == 1
    lag = value(samples, "artifact_parity_verify_lag_seconds_sum")
    assert lag is not None and lag < 15, f"the new version was checked {lag}s after its creation"
    assert value(samples, "artifact_parity_verify_lag_seconds_bucket", le="15.0") == 1
    assert await sidecar.stop() == 0
