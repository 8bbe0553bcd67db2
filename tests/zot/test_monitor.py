"""The monitor as the sidecar runs it: newest versions, metrics, /status.json, and registry failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from tests.support.registry import RegistryServer, free_port
from tests.support.zot_emulator import ZotEmulator
from tests.zot.helpers import (
    Apps,
    credentials,
    only_scan,
    only_signature,
    sample,
    scan_gauge,
    signature_gauge,
    vulnerability_gauge,
)
from verifier.metrics import Metrics
from verifier.model import ArtifactCoordinates, InventoryItem
from verifier.stores.oci import RegistryTransport
from verifier.zot import ScanState, SignatureStatus, ZotMonitor, newest_versions

UTC = dt.UTC


def _at(day: int) -> dt.datetime:
    return dt.datetime(2025, 1, day, tzinfo=UTC)


async def test_vulnerabilities_count_the_newest_version_of_each_app(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                                    apps: Apps, metrics: Metrics) -> None:
    # orders: 2.0.0 is newest by created_at although it comes first; its CVEs count, 1.0.0's do not
    for version in ("2.0.0", "1.0.0"):
        apps.push("orders", version)
    zot.set_scan(apps.reference("orders", "2.0.0"), counts={"HIGH": 2, "LOW": 1})
    zot.set_scan(apps.reference("orders", "1.0.0"), counts={"CRITICAL": 5})
    # billing: no created_at; 1.1 was first seen later than 1.0
    for version in ("1.0", "1.1"):
        apps.push("billing", version)
    zot.set_scan(apps.reference("billing", "1.0"), counts={"CRITICAL": 9})
    zot.set_scan(apps.reference("billing", "1.1"), counts={"MEDIUM": 3})
    items = [apps.item("orders", "2.0.0", _at(20)), apps.item("orders", "1.0.0", _at(10)),
             apps.item("billing", "1.1"), apps.item("billing", "1.0")]
    first_seen = {apps.coordinates("billing", "1.0"): _at(1), apps.coordinates("billing", "1.1"): _at(2)}
    monitor = ZotMonitor(zot_transport)

    snapshot = await monitor.refresh(items, first_seen)
    monitor.apply(snapshot, metrics)

    assert vulnerability_gauge(metrics) == {"unknown": 0, "low": 1, "medium": 3, "high": 2, "critical": 0}
    assert {(c.app, c.version) for c in snapshot.newest} == {("orders", "2.0.0"), ("billing", "1.1")}
    assert scan_gauge(metrics) == {**only_scan("high"), "critical": 2, "medium": 1}


def test_newest_versions_rules() -> None:
    c = [ArtifactCoordinates("t", "a", v) for v in ("1", "2", "3", "4")]
    # greatest created_at wins, whatever the order
    assert newest_versions([InventoryItem(c[0], created_at=_at(5)), InventoryItem(c[1], created_at=_at(3))]) == {
        ("t", "a"): c[0]}
    # without created_at: the latest first seen
    assert newest_versions([InventoryItem(c[0]), InventoryItem(c[1])], {c[0]: _at(9), c[1]: _at(2)}) == {
        ("t", "a"): c[0]}
    # neither: the later inventory row
    assert newest_versions([InventoryItem(c[2]), InventoryItem(c[3])]) == {("t", "a"): c[3]}
    # a naive created_at is taken as UTC, not an error
    naive = dt.datetime(2025, 1, 7)
    assert newest_versions([InventoryItem(c[0], created_at=naive), InventoryItem(c[1], created_at=_at(6))]) == {
        ("t", "a"): c[0]}


async def test_apply_and_status_json(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                     metrics: Metrics) -> None:
    apps.push("orders", "1.0.0", scannable=False)
    apps.push_with_oras("orders", "1.0.1")  # exactly as the platform's upload path writes it
    monitor = ZotMonitor(zot_transport, require_signatures=True)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0"), apps.item("orders", "1.0.1")])
    monitor.apply(snapshot, metrics)

    assert scan_gauge(metrics) == only_scan("not_scannable", 2)
    assert signature_gauge(metrics) == only_signature("unsigned", 2)
    assert sample(metrics, "scan_refresh_timestamp_seconds") == pytest.approx(snapshot.refreshed_at.timestamp())
    assert sample(metrics, "signatures_required") == 1
    doc = json.loads(json.dumps(snapshot.as_dict()))  # JSON-serialisable as is
    assert doc["scan_versions"]["not_scannable"] == 2 and doc["complete"] is True
    assert doc["flavour"]["name"] == "zot" and doc["signature_requirement_met"] is False
    assert {v["scan"] for v in doc["versions"]} == {"not_scannable"}
    jar_note = next(n for n in doc["notes"] if "application/java-archive" in n)
    assert "inside a tar layer is scannable" in jar_note and "2 of 2 versions are not scannable" in jar_note
    assert "versions" not in snapshot.as_dict(versions=False)


async def test_not_scanned_note_names_the_database(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                   apps: Apps) -> None:
    apps.push("orders", "1.0.0")
    zot.cve_db_present = False
    snapshot = await ZotMonitor(zot_transport).refresh([apps.item("orders", "1.0.0")])
    assert any("cve-db is not present" in n for n in snapshot.notes)
    assert any("1 newest versions have no scan result" in n for n in snapshot.notes)


async def test_invalid_reference_is_an_error_for_that_row_only(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                               apps: Apps, metrics: Metrics) -> None:
    apps.push("orders", "1.0.0")
    zot.set_scan(apps.reference("orders", "1.0.0"))
    items = [apps.item("orders", "1.0.0"), InventoryItem(ArtifactCoordinates(apps.tenant, "Bad App", "1"))]
    monitor = ZotMonitor(zot_transport)

    snapshot = await monitor.refresh(items)
    monitor.apply(snapshot, metrics)

    assert scan_gauge(metrics) == {**only_scan("none"), "error": 1}
    bad = next(v for v in snapshot.versions if v.coordinates.app == "Bad App")
    assert bad.reference is None and "invalid reference" in (bad.detail or "")
    assert snapshot.complete


async def test_registry_down_on_first_refresh() -> None:
    """Nothing answered yet: every version is `error` / `unavailable`, nothing raises, no timestamp."""
    metrics = Metrics()
    items = [InventoryItem(ArtifactCoordinates("acme", "orders", v)) for v in ("1", "2")]
    async with RegistryTransport(f"http://127.0.0.1:{free_port()}", timeout_seconds=2) as transport:
        monitor = ZotMonitor(transport)
        snapshot = await monitor.refresh(items)
        monitor.apply(snapshot, metrics)

    assert scan_gauge(metrics) == only_scan("error", 2)
    assert signature_gauge(metrics) == only_signature("unavailable", 2)
    assert not snapshot.complete and snapshot.flavour.name == "unknown"
    assert sample(metrics, "scan_refresh_timestamp_seconds") == 0
    assert any("incomplete" in n for n in snapshot.notes)


async def test_registry_outage_keeps_the_last_known_status(zot_backing_registry: RegistryServer, apps: Apps,
                                                           cosign_keys, metrics: Metrics) -> None:
    """A Zot that stops answering: versions keep their last status (marked stale), the refresh timestamp
    stays where it was, so the stale-data alert and not a flapping gauge tells the story."""
    ours, _ = cosign_keys
    from tests.support.cosign import sign_and_push

    digest = apps.push("orders", "1.0.0")
    sign_and_push(ours, apps.registry, apps.repository("orders"), digest)
    items = [apps.item("orders", "1.0.0")]
    emulator = await ZotEmulator(zot_backing_registry.url).start()
    emulator.set_scan(apps.reference("orders", "1.0.0"), counts={"CRITICAL": 2})
    transport = RegistryTransport(emulator.url, credentials=credentials(zot_backing_registry), timeout_seconds=2)
    await transport.open()
    try:
        monitor = ZotMonitor(transport, cosign_public_key=ours.public_key)
        first = await monitor.refresh(items)
        monitor.apply(first, metrics)
        stamp = sample(metrics, "scan_refresh_timestamp_seconds")
        await emulator.stop()

        second = await monitor.refresh(items)
        monitor.apply(second, metrics)
    finally:
        await transport.close()
        await emulator.stop()

    assert first.complete and not second.complete
    assert scan_gauge(metrics) == only_scan("critical")
    assert vulnerability_gauge(metrics)["critical"] == 2
    assert signature_gauge(metrics) == only_signature("trusted")
    (version,) = second.versions
    assert version.stale and version.scan is ScanState.CRITICAL and version.signature is SignatureStatus.TRUSTED
    assert "did not answer" in (version.detail or "")
    assert sample(metrics, "scan_refresh_timestamp_seconds") == stamp
    assert second.as_dict()["last_complete_at"] == first.as_dict()["refreshed_at"]


async def test_refresh_never_raises_on_a_bug(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = ZotMonitor(zot_transport)

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(monitor.search, "images", broken)
    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    assert not snapshot.complete and "internal error" in (snapshot.error or "")
    assert snapshot.versions[0].scan is ScanState.ERROR


async def test_run_forever_refreshes_and_applies(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                                 metrics: Metrics) -> None:
    apps.push("orders", "1.0.0")
    zot.set_scan(apps.reference("orders", "1.0.0"), counts={"LOW": 1})
    monitor = ZotMonitor(zot_transport)
    calls = 0

    async def inventory() -> list[InventoryItem]:
        nonlocal calls
        calls += 1
        return [apps.item("orders", "1.0.0")]

    task = asyncio.create_task(monitor.run_forever(inventory, metrics, 0.05))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if calls >= 2:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls >= 2
    assert scan_gauge(metrics) == only_scan("low")
    assert monitor.snapshot is not None and monitor.snapshot.complete
