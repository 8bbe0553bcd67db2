"""The registry failing is not fatal either: checks say `error` (never match or mismatch), the probe
says so in `artifact_parity_registry_up` and /status, /readyz stays ready, and it recovers by itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.sidecar.conftest import Sidecar, row, value, write_inventory
from tests.support.proxy import CountingProxy


async def test_the_registry_failing_and_coming_back(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    c, _ = stores.dual_write("cart", "1.0")
    write_inventory(inventory_file, [row(c)])
    tenant = stores.tenant
    sidecar_config["schedule"].update(coverage_window="3s", retry_after="1s", retry_max="1s")
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def state_is(state: str) -> Any:
        async def probe() -> bool:
            s = await sidecar.metrics()
            return value(s, "artifact_parity_versions", state=state, tenant=tenant) == 1
        return probe

    await sidecar.wait_for(await state_is("match"), "the first check")
    proxy.fail_with(503)

    async def down() -> bool:
        s = await sidecar.metrics()
        return (value(s, "artifact_parity_registry_up") == 0
                and value(s, "artifact_parity_versions", state="error", tenant=tenant) == 1)

    await sidecar.wait_for(down, "the probe and the re-check to see the registry failing")
    samples = await sidecar.metrics()
    assert value(samples, "artifact_parity_checks_total", outcome="mismatch", tenant=tenant) == 0
    assert (value(samples, "artifact_parity_read_errors_total", store="oci", reason="server_error") or 0) >= 1
    assert (value(samples, "artifact_parity_faults_total", fault="oci_server_error", tenant=tenant) or 0) >= 1
    assert (await sidecar.get("/readyz"))[0] == 200, "the registry's health never goes to /readyz"
    status = await sidecar.status()
    assert status["registry"]["up"] is False and "HTTP 503" in status["registry"]["error"]
    assert status["parity"]["error"] == 1
    assert stores.registry.password not in status["registry"]["error"]
    code, _, page = await sidecar.get("/status")
    assert code == 200 and f"registry {proxy.url}</td><td><span class=\"bad\">down</span>" in page
    gate = await sidecar.gate()
    assert gate["verdict"] == "NO-GO"  # the registry error ratio proves a problem
    assert not next(cond for cond in gate["conditions"] if cond["name"] == "registry_error_ratio")["ok"]

    proxy.fail_with(None)

    async def back() -> bool:
        s = await sidecar.metrics()
        return (value(s, "artifact_parity_registry_up") == 1
                and value(s, "artifact_parity_versions", state="match", tenant=tenant) == 1)

    await sidecar.wait_for(back, "the registry to come back and the version to match again")
    assert any("reachable again" in e["message"] for e in sidecar.logs.entries())
    errors = [e for e in sidecar.logs.entries() if e.get("outcome") == "error"]
    samples = await sidecar.metrics()
    assert len(errors) == value(samples, "artifact_parity_checks_total", outcome="error", tenant=tenant), \
        "one log line per non-match"
    assert all("oci_server_error" in e["faults"] for e in errors)
    assert await sidecar.stop() == 0
