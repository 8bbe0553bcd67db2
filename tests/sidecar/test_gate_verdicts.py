"""The cutover gate in each of its verdicts, as a rollout controller (GET /gate), Prometheus
(`artifact_parity_cutover_ready`, `artifact_parity_gate_condition`) and a person (`parity-verifier gate`)
see it: INCONCLUSIVE before the window is observed, GO once it is, NO-GO after a mismatch."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.sidecar.conftest import Sidecar, parse_samples, row, value, write_inventory
from tests.support.jars import flip_byte
from tests.support.proxy import CountingProxy

REPO = Path(__file__).resolve().parents[2]


async def gate_cli(config: Path, fmt: str = "json") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "verifier", "gate", "-c", str(config), "--format", fmt, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def assert_gauges_agree(sidecar: Sidecar, verdict: dict[str, Any]) -> None:
    samples = parse_samples((await sidecar.get("/metrics"))[2])
    assert value(samples, "artifact_parity_cutover_ready") == (1 if verdict["verdict"] == "GO" else 0)
    for condition in verdict["conditions"]:
        assert value(samples, "artifact_parity_gate_condition", condition=condition["name"]) == \
            (1 if condition["ok"] else 0), condition


async def test_the_gate_in_each_of_its_verdicts(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], start_sidecar: Any,
    tmp_path: Path,
) -> None:
    versions = [stores.dual_write("ledgerapp", v)[0] for v in ("1.0", "1.1")]
    write_inventory(inventory_file, [row(c) for c in versions])
    # re-checked every 4s: the window (6s) always holds registry reads, no version is older than 5s
    sidecar_config["schedule"]["coverage_window"] = "5s"
    sidecar_config["gate"] = {"window": "6s"}
    config = tmp_path / "parity.yaml"
    config.write_text(json.dumps(sidecar_config))  # JSON is YAML
    sidecar: Sidecar = await start_sidecar(sidecar_config)

    async def checked() -> bool:
        return (await sidecar.metric("artifact_parity_versions", state="match", tenant=stores.tenant)) == 2

    await sidecar.wait_for(checked, "the first pass")

    # INCONCLUSIVE: everything matches, but the 6s window has not been observed yet
    verdict = await sidecar.gate()
    assert verdict["verdict"] == "INCONCLUSIVE"
    failing = {c["name"] for c in verdict["conditions"] if not c["ok"]}
    assert failing == {"window_observed"}, verdict["conditions"]
    await assert_gauges_agree(sidecar, verdict)
    code, out, err = await gate_cli(config)
    assert code == 3, err
    assert json.loads(out)["verdict"] == "INCONCLUSIVE"

    # GO: the window is observed in full, every version re-checked within the coverage window
    async def go() -> Any:
        v = await sidecar.gate()
        return v if v["verdict"] == "GO" else None

    verdict = await sidecar.wait_for(go, "the gate to say GO", within=15)
    assert all(c["ok"] for c in verdict["conditions"]) and verdict["blocking_versions"] == []
    await assert_gauges_agree(sidecar, verdict)
    code, out, err = await gate_cli(config, "text")
    assert code == 0, out + err
    assert out.startswith("GO: every cutover condition holds")

    # NO-GO: the registry starts serving a corrupted blob for one version
    bad = versions[0]
    registry = stores.registry
    flip_byte(registry.blob_file(registry.jar_layer_digest(stores.repository(bad), f"v{bad.version}")))

    async def cutover_withdrawn() -> bool:  # without anyone asking /gate: the gate loop follows the change
        s = parse_samples((await sidecar.get("/metrics"))[2])
        return (value(s, "artifact_parity_versions", state="mismatch", tenant=stores.tenant) == 1
                and value(s, "artifact_parity_cutover_ready") == 0)

    await sidecar.wait_for(cutover_withdrawn, "artifact_parity_cutover_ready to drop to 0", within=10)
    verdict = await sidecar.gate()
    assert verdict["verdict"] == "NO-GO"
    assert [(v["version"], v["outcome"]) for v in verdict["blocking_versions"]] == [("1.0", "mismatch")]
    assert {c["name"] for c in verdict["conditions"] if not c["ok"]} >= {"latest_all_match", "no_failures_in_window"}
    await assert_gauges_agree(sidecar, verdict)
    code, out, err = await gate_cli(config)
    assert code == 1, err
    cli = json.loads(out)
    assert cli["verdict"] == "NO-GO" and cli["blocking_versions"][0]["version"] == "1.0"
    assert registry.password not in out + err
    assert await sidecar.stop() == 0
