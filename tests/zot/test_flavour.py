"""Which registry is this, and which Zot extensions are on; never a failure of the sidecar."""

from __future__ import annotations

from tests.support.registry import free_port
from tests.support.zot_emulator import COSIGN, MGMT, SEARCH, USERPREFS, ZotEmulator
from tests.zot.helpers import Apps, only_scan, only_signature, sample, scan_gauge, signature_gauge
from verifier.metrics import Metrics
from verifier.stores.oci import RegistryTransport
from verifier.zot import ZotMonitor, detect_flavour


async def test_zot_with_search(zot: ZotEmulator, zot_transport: RegistryTransport) -> None:
    flavour = await detect_flavour(zot_transport)
    assert flavour.name == "zot"
    assert flavour.release_tag == "v2.1.20"
    assert flavour.dist_spec_version == "1.1.1"
    assert flavour.extensions == (SEARCH, MGMT, USERPREFS, COSIGN)
    assert "search" in flavour.compiled and "sync" in flavour.compiled
    assert flavour.auth_methods == ("htpasswd",)
    assert flavour.search_available and flavour.reason is None
    assert flavour.as_dict()["search_available"] is True


async def test_zot_without_search(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                  metrics: Metrics) -> None:
    """Search off (and with it mgmt): scans and Zot's signature status are unavailable, and the status
    page says why."""
    zot.disable(SEARCH, MGMT)
    apps.push("orders", "1.0.0")
    apps.push("orders", "1.0.1")
    monitor = ZotMonitor(zot_transport)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0"), apps.item("orders", "1.0.1")])
    monitor.apply(snapshot, metrics)

    assert snapshot.flavour.name == "zot" and not snapshot.flavour.search_available
    assert "search extension disabled" in (snapshot.flavour.reason or "")
    assert scan_gauge(metrics) == only_scan("unavailable", 2)
    assert signature_gauge(metrics) == only_signature("unavailable", 2)
    assert any("search extension disabled" in note for note in snapshot.notes)
    assert zot.search_requests == []  # nothing asked of an extension that is not there


async def test_zot_with_nothing_enabled(zot: ZotEmulator, zot_transport: RegistryTransport) -> None:
    zot.disable(SEARCH, MGMT, USERPREFS, COSIGN)
    flavour = await detect_flavour(zot_transport)
    assert (flavour.name, flavour.extensions, flavour.search_available) == ("zot", (), False)
    assert "enabled extensions: none" in (flavour.reason or "")


async def test_plain_distribution_registry(plain_transport: RegistryTransport, apps: Apps,
                                           metrics: Metrics) -> None:
    """The real CNCF registry: discover and mgmt answer 404; scan and signature metrics say unavailable."""
    apps.push("orders", "1.0.0")
    monitor = ZotMonitor(plain_transport)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0"), apps.item("orders", "2.0.0")])
    monitor.apply(snapshot, metrics)

    assert snapshot.flavour.name == "distribution"
    assert "plain OCI distribution registry" in (snapshot.flavour.reason or "")
    assert scan_gauge(metrics) == only_scan("unavailable", 2)
    assert signature_gauge(metrics) == only_signature("unavailable", 2)
    assert snapshot.complete and snapshot.signature_source == "none"
    assert sample(metrics, "scan_refresh_timestamp_seconds") == snapshot.refreshed_at.timestamp()
    notes = " ".join(snapshot.notes)
    assert "plain OCI distribution registry" in notes and "zot.cosign_public_key" in notes


async def test_unreachable_registry_is_unknown_not_an_exception() -> None:
    async with RegistryTransport(f"http://127.0.0.1:{free_port()}", timeout_seconds=2) as transport:
        flavour = await detect_flavour(transport)
    assert flavour.name == "unknown"
    assert "could not tell which registry this is" in (flavour.reason or "")
    assert "cannot connect" in (flavour.reason or "")


async def test_wrong_credentials_are_reported(zot: ZotEmulator, zot_backing_registry, apps: Apps,
                                              metrics: Metrics) -> None:
    """mgmt is reachable without credentials, the search API is not: the refresh says so, nothing raises."""
    from verifier.stores.oci import Credentials

    apps.push("orders", "1.0.0")
    async with RegistryTransport(zot.url, credentials=Credentials("parity", "wrong"), timeout_seconds=5) as t:
        monitor = ZotMonitor(t)
        snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
        monitor.apply(snapshot, metrics)
    assert snapshot.flavour.search_available
    assert not snapshot.complete
    assert scan_gauge(metrics) == only_scan("error")
    assert "401" in (snapshot.versions[0].detail or "")
    assert sample(metrics, "scan_refresh_timestamp_seconds") == 0
