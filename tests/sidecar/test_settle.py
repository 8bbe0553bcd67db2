"""A version still being uploaded is not recorded as missing: it is checked again once settled."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.sidecar.conftest import Sidecar, row, write_inventory
from tests.support.proxy import CountingProxy


async def test_a_young_version_missing_from_the_registry_is_rechecked_before_it_is_recorded(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    young = stores.coordinates("uploading", "2.0.0")
    stores.put_file(young, stores.jar("uploading.jar"))  # the filesystem write landed, the push not yet
    old = stores.coordinates("forgotten", "1.0.0")
    stores.put_file(old, stores.jar("forgotten.jar"))  # long ago, and never pushed: a real gap
    now = dt.datetime.now(dt.UTC)
    write_inventory(inventory_file, [row(young, created_at=now), row(old, created_at=now - dt.timedelta(hours=1))])
    sidecar_config["schedule"]["settle_time"] = "4s"
    sidecar: Sidecar = await start_sidecar(sidecar_config)
    tenant = stores.tenant

    async def old_recorded() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="missing_oci", tenant=tenant)) == 1

    await sidecar.wait_for(old_recorded, "the old gap to be recorded as missing_oci")
    # the young one was read, found missing, and not recorded: no missing outcome, no gate blocker
    assert await sidecar.metric("artifact_parity_versions", state="unverified", tenant=tenant) == 1
    assert await sidecar.metric("artifact_parity_checks_total", outcome="missing_oci", tenant=tenant) == 1
    gate = await sidecar.gate()
    assert [v["app"] for v in gate["blocking_versions"] if v["outcome"] == "missing_oci"] == ["forgotten"]

    stores.push(young, stores.root / young.tenant / young.app / young.version / "app.jar")  # the push lands

    async def young_matched() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=tenant)) == 1

    await sidecar.wait_for(young_matched, "the young version to match once settled", within=10)
    assert await sidecar.metric("artifact_parity_checks_total", outcome="missing_oci", tenant=tenant) == 1
    assert await sidecar.metric("artifact_parity_checks_total", outcome="match", tenant=tenant) == 1
