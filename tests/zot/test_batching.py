"""Many versions per search request, counted at the emulator; URL length respected."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.zot_emulator import ZotEmulator
from tests.zot.helpers import Apps, scan_gauge
from verifier.metrics import Metrics
from verifier.stores.oci import RegistryTransport
from verifier.zot import ZotMonitor, image_query, plan_batches, search_url_length


def _push_versions(apps: Apps, zot: ZotEmulator, n: int) -> list:
    items = []
    for i in range(n):
        version = f"1.{i}"
        apps.push("orders", version, seed=1)  # one JAR for all: its blob is uploaded once
        if i % 2 == 0:
            zot.set_scan(apps.reference("orders", version), counts={"LOW": 1})
        items.append(apps.item("orders", version))
    return items


async def test_thirty_versions_in_one_request(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                              metrics: Metrics) -> None:
    items = _push_versions(apps, zot, 30)
    monitor = ZotMonitor(zot_transport, batch_size=50, max_url_length=100_000)

    snapshot = await monitor.refresh(items)
    monitor.apply(snapshot, metrics)

    assert zot.image_queries == 1
    assert snapshot.search_requests == 1
    assert [r.method for r in zot.search_requests] == ["GET"]  # a POST would need a push-scoped token
    assert scan_gauge(metrics)["low"] == 15 and scan_gauge(metrics)["not_scanned"] == 15
    assert zot.cve_list_calls == 0


async def test_batch_size_splits_requests(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                          metrics: Metrics) -> None:
    items = _push_versions(apps, zot, 20)
    monitor = ZotMonitor(zot_transport, batch_size=6, max_url_length=100_000)

    snapshot = await monitor.refresh(items)
    monitor.apply(snapshot, metrics)

    assert zot.image_queries == 4  # 6 + 6 + 6 + 2
    assert scan_gauge(metrics)["low"] == 10 and scan_gauge(metrics)["not_scanned"] == 10


async def test_long_urls_are_split_below_the_limit(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                   apps: Apps, metrics: Metrics) -> None:
    items = _push_versions(apps, zot, 20)
    limit = 2_500
    monitor = ZotMonitor(zot_transport, batch_size=50, max_url_length=limit)

    snapshot = await monitor.refresh(items)
    monitor.apply(snapshot, metrics)

    assert zot.image_queries > 1
    assert all(r.url_length <= limit for r in zot.search_requests)
    assert scan_gauge(metrics)["low"] == 10 and scan_gauge(metrics)["not_scanned"] == 10


async def test_default_batch_of_fifty_fits_a_proxy_url_limit(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                             apps: Apps) -> None:
    """With the defaults (50 per batch, 8000-byte URLs) 50 versions take few requests, none over 8000."""
    items = _push_versions(apps, zot, 50)
    snapshot = await ZotMonitor(zot_transport).refresh(items)
    assert snapshot.complete
    assert 1 <= zot.image_queries <= 3
    assert all(r.url_length <= 8000 for r in zot.search_requests)


def test_the_query_is_valid_graphql_with_one_alias_per_version(zot_emulator: ZotEmulator) -> None:
    from graphql import parse, validate

    query = image_query(["acme/orders:v1.0", "acme/orders:v1.1"])
    document = parse(query)
    assert validate(zot_emulator.schema, document) == []
    aliases = [sel.alias.value for sel in document.definitions[0].selection_set.selections]
    assert aliases == ["v0", "v1"]
    assert "CVEListForImage" not in query
    url = f"http://zot:5000/v2/_zot/ext/search?query={query}"
    assert parse_qs(urlsplit(url).query)["query"][0].startswith("{v0:Image(image:")
    assert json.dumps("acme/orders:v1.0") in query


@pytest.mark.parametrize(("n", "batch_size", "limit", "expected"), [
    (0, 50, 8000, []),
    (1, 50, 10, [1]),  # one reference always makes a batch
    (120, 50, 1_000_000, [50, 50, 20]),
    (7, 3, 1_000_000, [3, 3, 1]),
])
def test_plan_batches(n: int, batch_size: int, limit: int, expected: list[int]) -> None:
    refs = [f"tenant/app:v{i}" for i in range(n)]
    batches = plan_batches(refs, batch_size=batch_size, max_url_length=limit)
    assert [len(b) for b in batches] == expected
    assert [r for b in batches for r in b] == refs


def test_plan_batches_respects_the_url_length() -> None:
    refs = [f"some-tenant/some-application:v{i}.0.0" for i in range(200)]
    for batch in plan_batches(refs, batch_size=50, max_url_length=8000, base_url="https://zot.internal:5000"):
        assert search_url_length("https://zot.internal:5000", batch) <= 8000
