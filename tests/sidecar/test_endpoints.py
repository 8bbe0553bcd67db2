"""What Prometheus and people get from the running sidecar's HTTP endpoints."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stores
from tests.sidecar.conftest import Sidecar, parse_samples, row, value, write_inventory
from tests.support.proxy import CountingProxy
from verifier.metrics import FAULTS, GATE_CONDITIONS, OUTCOMES, READ_ERROR_REASONS, STATES

PROMTOOL = "/usr/bin/promtool"


async def test_metrics_pass_promtool_have_help_and_every_label_value_from_start(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    c, _ = stores.dual_write("web", "1.0")
    write_inventory(inventory_file, [row(c)])
    sidecar: Sidecar = await start_sidecar(sidecar_config)
    tenant = stores.tenant

    async def checked() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=tenant)) == 1

    await sidecar.wait_for(checked, "the version to be checked")
    code, headers, text = await sidecar.get("/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")

    promtool = await asyncio.create_subprocess_exec(
        PROMTOOL, "check", "metrics", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(promtool.communicate(text.encode()), 30)
    assert promtool.returncode == 0 and out.strip() == b"" and err.strip() == b"", \
        f"promtool check metrics: {out.decode()}{err.decode()}"

    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families if f.name.startswith("artifact_parity_")} >= {
        "artifact_parity_checks", "artifact_parity_versions", "artifact_parity_cutover_ready",
        "artifact_parity_gate_condition", "artifact_parity_inventory_up", "artifact_parity_registry_up",
        "artifact_parity_verify_lag_seconds", "artifact_parity_coverage_ratio", "artifact_parity_build_info"}
    undocumented = [f.name for f in families if not f.documentation.strip()]
    assert undocumented == [], f"metrics without HELP: {undocumented}"

    samples = parse_samples(text)
    for outcome in OUTCOMES:
        assert value(samples, "artifact_parity_checks_total", outcome=outcome, tenant=tenant) == \
            (1 if outcome == "match" else 0), outcome
    for fault in FAULTS:
        assert value(samples, "artifact_parity_faults_total", fault=fault, tenant=tenant) == 0, fault
    for state in STATES:
        assert value(samples, "artifact_parity_versions", state=state, tenant=tenant) == \
            (1 if state == "match" else 0), state
    for store in ("filesystem", "oci"):
        for reason in READ_ERROR_REASONS:
            assert value(samples, "artifact_parity_read_errors_total", store=store, reason=reason) == 0
    for condition in GATE_CONDITIONS:
        assert value(samples, "artifact_parity_gate_condition", condition=condition) is not None, condition
    assert value(samples, "artifact_parity_registry_up") == 1
    assert value(samples, "artifact_parity_inventory_up") == 1
    assert value(samples, "artifact_parity_coverage_ratio") == 1.0
    assert value(samples, "artifact_parity_read_bytes_total", store="oci") == \
        value(samples, "artifact_parity_read_bytes_total", store="filesystem") > 0
    assert await sidecar.stop() == 0


async def test_openmetrics_when_asked_and_the_other_endpoints(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
) -> None:
    c, _ = stores.dual_write("shop", "3.3")
    write_inventory(inventory_file, [row(c)])
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def checked() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=stores.tenant)) == 1

    await sidecar.wait_for(checked, "the version to be checked")
    code, headers, text = await sidecar.get(
        "/metrics", Accept="application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert code == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}
    checks = families["artifact_parity_checks"]
    assert checks.type == "counter"
    assert any(s.labels == {"outcome": "match", "tenant": stores.tenant} and s.value == 1 for s in checks.samples)

    code, _, body = await sidecar.get("/healthz")
    assert (code, body) == (200, "ok\n")
    code, _, body = await sidecar.get("/readyz")
    assert (code, body) == (200, "ready\n")
    code, headers, _ = await sidecar.get("/")
    assert code == 302 and headers["Location"] == "/status"

    code, headers, page = await sidecar.get("/status")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    for heading in ("Cutover gate", "Parity by state", "Coverage", "Sources", "Most recent non-matches",
                    "Supply chain"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "checked within the window</td><td>100.0%</td>" in page
    assert "<p class='muted'>none</p>" in page  # no non-matches
    assert "distribution" in page  # the registry's flavour, with what it means for scans
    status = await sidecar.status()
    assert status["ready"] is True and status["registry"]["up"] is True
    assert status["registry"]["url"] == proxy.url and status["inventory"]["source"] == "file"
    assert status["parity"]["match"] == 1 and status["coverage"]["in_flight"] == 0
    assert status["budgets"]["concurrency"] == 2
    assert await sidecar.stop() == 0
