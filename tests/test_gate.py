"""The cutover gate over a real ledger: a simulated 7-day window (explicit `now`, no sleeping)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.ledger.results import T0, coords, healthy_history, item, mismatch, record_all, result
from verifier.config import Settings, settings_from_mapping
from verifier.gate import GateVerdict, apply_to_metrics, evaluate
from verifier.ledger import Ledger, SqliteLedger
from verifier.metrics import Metrics
from verifier.model import Fault, GateCondition, Outcome, ReadErrorReason

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
START = T0  # the sidecar's first check
NOW = T0 + 8 * DAY + HOUR  # a full 7-day window, and a day more
VERSIONS = [coords("orders", "1.0.0"), coords("orders", "1.0.1"), coords("billing", "3.2.0", tenant="globex")]
INVENTORY = [item(c) for c in VERSIONS]
ALL_CONDITIONS = [c.value for c in GateCondition]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_from_mapping({
        "inventory": {"source": "file", "path": "versions.yaml"},
        "filesystem": {"root": "artifacts"},
        "registry": {"url": "http://127.0.0.1:5000"},
        "ledger": {"path": "ledger.sqlite"},
        "gate": {"window": "7d", "max_registry_error_ratio": 0.01, "max_registry_p99_seconds": 5},
        "schedule": {"coverage_window": "24h"},
    }, base_dir=tmp_path)


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[Ledger]:
    async with SqliteLedger.open(settings.ledger.path) as opened:
        yield opened


async def healthy(ledger: Ledger, until: dt.datetime = NOW - HOUR, since: dt.datetime = START) -> None:
    await ledger.observe(INVENTORY, since)
    await healthy_history(ledger, VERSIONS, since, until)


def failing(verdict: GateVerdict) -> dict[str, float | None]:
    return {c.name: c.value for c in verdict.conditions if not c.ok}


# --- GO -------------------------------------------------------------------------------------------


async def test_all_good_over_a_full_window_is_go(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)

    assert verdict.verdict == "GO" and verdict.exit_code == 0
    doc = verdict.as_dict()
    assert list(doc) == ["verdict", "conditions", "blocking_versions"]
    assert [c["name"] for c in doc["conditions"]] == ALL_CONDITIONS
    assert all(set(c) == {"name", "ok", "value", "threshold", "detail"} and c["ok"] for c in doc["conditions"])
    assert doc["blocking_versions"] == []
    values = {c["name"]: (c["value"], c["threshold"]) for c in doc["conditions"]}
    assert values == {
        "latest_all_match": (0, 0),
        "no_failures_in_window": (0, 0),
        "window_observed": ((NOW - START).total_seconds(), 7 * 86400),
        "coverage_complete": (1.0, 1.0),
        "registry_error_ratio": (0.0, 0.01),
        "registry_latency_p99": (0.2, 5),
    }
    json.dumps(doc)  # served as is by /gate

    text = verdict.render_text()
    assert text.startswith("GO: ")
    assert "✓ registry_latency_p99" in text and "0.2s (threshold ≤ 5s)" in text and "✗" not in text


async def test_a_mismatch_before_the_window_no_longer_blocks(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    await ledger.record(mismatch(VERSIONS[0], NOW - 7 * DAY - HOUR))
    assert (await evaluate(ledger, INVENTORY, settings, NOW)).verdict == "GO"


# --- NO-GO ----------------------------------------------------------------------------------------


async def test_a_single_mismatch_in_the_window_is_no_go_naming_the_version(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    bad_at = NOW - 3 * DAY + dt.timedelta(minutes=30)
    await ledger.record(mismatch(VERSIONS[1], bad_at))  # a later check matched again

    verdict = await evaluate(ledger, INVENTORY, settings, NOW)

    assert verdict.verdict == "NO-GO" and verdict.exit_code == 1
    assert failing(verdict) == {"no_failures_in_window": 1}
    cond = verdict.condition(GateCondition.NO_FAILURES_IN_WINDOW)
    assert "acme/orders@1.0.1 (mismatch at " in cond.detail
    assert verdict.blocking_versions == [{
        "tenant": "acme", "app": "orders", "version": "1.0.1", "outcome": "mismatch",
        "checked_at": bad_at.isoformat(timespec="seconds"), "faults": ["oci_blob_digest_mismatch"],
    }]
    text = verdict.render_text()
    assert text.startswith("NO-GO: ")
    assert "✗ no_failures_in_window" in text
    assert "acme/orders 1.0.1  mismatch" in text


async def test_a_latest_missing_outcome_is_no_go(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    await ledger.record(result(VERSIONS[2], Outcome.MISSING_OCI, NOW - HOUR / 2, faults=[Fault.OCI_MANIFEST_UNKNOWN]))
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)
    assert verdict.verdict == "NO-GO"
    assert failing(verdict) == {"latest_all_match": 1, "no_failures_in_window": 1}
    assert "2 of 3 versions match; latest outcome of the others: 1 missing_oci" in \
        verdict.condition(GateCondition.LATEST_ALL_MATCH).detail
    assert [(v["app"], v["outcome"], v["faults"]) for v in verdict.blocking_versions] == [
        ("billing", "missing_oci", ["oci_manifest_unknown"])
    ]


async def test_registry_errors_above_the_ratio_are_no_go(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)  # in the window: 28 rounds x 3 versions = 84 good reads
    await record_all(ledger, [result(VERSIONS[0], Outcome.ERROR, NOW - 2 * DAY + i * HOUR,
                                     oci_error=ReadErrorReason.SERVER_ERROR, faults=[Fault.OCI_SERVER_ERROR])
                              for i in range(3)])
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)

    assert verdict.verdict == "NO-GO"
    cond = verdict.condition(GateCondition.REGISTRY_ERROR_RATIO)
    assert not cond.ok and cond.threshold == 0.01
    assert cond.value == pytest.approx(3 / 87)  # reads inside the 7-day window only
    assert cond.detail.startswith("3 of 87 registry reads failed in the last 7d")
    assert list(failing(verdict)) == ["registry_error_ratio"]
    assert "✗ registry_error_ratio" in verdict.render_text() and "3.45% (threshold ≤ 1.00%)" in verdict.render_text()


async def test_slow_registry_reads_are_no_go(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    await record_all(ledger, [result(VERSIONS[0], at=NOW - 2 * DAY + i * HOUR, oci_seconds=12.0) for i in range(5)])
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)
    assert verdict.verdict == "NO-GO"
    assert failing(verdict) == {"registry_latency_p99": 12.0}


async def test_no_go_wins_over_inconclusive(ledger: Ledger, settings: Settings) -> None:
    young = NOW - 2 * DAY
    await healthy(ledger, since=young)
    await ledger.record(mismatch(VERSIONS[0], NOW - DAY))
    await ledger.observe([*INVENTORY, item(coords("new", "0.1.0"))], NOW)
    verdict = await evaluate(ledger, None, settings, NOW)
    assert verdict.verdict == "NO-GO"
    assert {"window_observed", "no_failures_in_window", "latest_all_match"} <= set(failing(verdict))
    assert [v["outcome"] for v in verdict.blocking_versions] == ["mismatch", "unverified"]


# --- INCONCLUSIVE ---------------------------------------------------------------------------------


async def test_a_young_ledger_is_inconclusive(ledger: Ledger, settings: Settings) -> None:
    since = NOW - 3 * DAY
    await healthy(ledger, since=since)
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)

    assert verdict.verdict == "INCONCLUSIVE" and verdict.exit_code == 3
    assert failing(verdict) == {"window_observed": 3 * 86400}
    detail = verdict.condition(GateCondition.WINDOW_OBSERVED).detail
    assert detail.startswith("evidence covers 3d of the 7d window")
    assert f"complete at {(since + 7 * DAY).isoformat(timespec='seconds')}" in detail
    assert verdict.render_text().startswith("INCONCLUSIVE: not enough evidence yet")


async def test_an_unverified_version_is_inconclusive(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    fresh = coords("orders", "1.1.0")
    await ledger.observe([*INVENTORY, item(fresh)], NOW - HOUR / 2)

    verdict = await evaluate(ledger, [*INVENTORY, item(fresh)], settings, NOW)

    assert verdict.verdict == "INCONCLUSIVE"
    assert failing(verdict) == {"latest_all_match": 1, "coverage_complete": 0.75}
    assert verdict.condition(GateCondition.LATEST_ALL_MATCH).detail.endswith("1 unverified")
    assert "1 of 4 versions not checked within the last 1d (1 never checked)" in \
        verdict.condition(GateCondition.COVERAGE_COMPLETE).detail
    assert verdict.blocking_versions == [{"tenant": "acme", "app": "orders", "version": "1.1.0",
                                          "outcome": "unverified", "checked_at": None, "faults": []}]


async def test_a_latest_error_is_inconclusive_not_no_go(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    await ledger.record(result(VERSIONS[0], Outcome.ERROR, NOW - HOUR / 2, oci_read=False,
                               faults=[Fault.INVALID_REFERENCE]))
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)
    assert verdict.verdict == "INCONCLUSIVE"
    assert failing(verdict) == {"latest_all_match": 1}
    assert [(v["version"], v["outcome"]) for v in verdict.blocking_versions] == [("1.0.0", "error")]


async def test_stale_coverage_is_inconclusive(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger, until=NOW - 2 * DAY)
    await healthy_history(ledger, VERSIONS[:2], NOW - 2 * DAY, NOW - HOUR)  # billing no longer checked
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)
    assert verdict.verdict == "INCONCLUSIVE"
    assert failing(verdict) == {"coverage_complete": pytest.approx(2 / 3)}
    assert "stalest: globex/billing@3.2.0" in verdict.condition(GateCondition.COVERAGE_COMPLETE).detail


async def test_a_gap_inside_the_window_means_it_was_not_observed_in_full(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger, until=NOW - 5 * DAY)
    await healthy_history(ledger, VERSIONS, NOW - 3 * DAY, NOW - HOUR)  # the sidecar was down for 2 days
    verdict = await evaluate(ledger, INVENTORY, settings, NOW)
    assert verdict.verdict == "INCONCLUSIVE"
    assert list(failing(verdict)) == ["window_observed"]
    assert "longer than the 1d coverage window" in verdict.condition(GateCondition.WINDOW_OBSERVED).detail


@pytest.mark.parametrize("inventory", [[], None])
async def test_no_evidence_at_all_is_inconclusive_never_go(
    ledger: Ledger, settings: Settings, inventory: list[object] | None
) -> None:
    verdict = await evaluate(ledger, inventory, settings, NOW)  # type: ignore[arg-type]
    assert verdict.verdict == "INCONCLUSIVE"
    assert set(failing(verdict)) == set(ALL_CONDITIONS) - {"no_failures_in_window"}
    assert verdict.condition(GateCondition.REGISTRY_ERROR_RATIO).value is None
    assert "no registry reads recorded in the last 7d" in verdict.render_text()


async def test_an_empty_inventory_over_a_healthy_ledger_is_inconclusive(ledger: Ledger, settings: Settings) -> None:
    await healthy(ledger)
    verdict = await evaluate(ledger, [], settings, NOW)
    assert verdict.verdict == "INCONCLUSIVE"
    assert "no versions to judge" in verdict.condition(GateCondition.LATEST_ALL_MATCH).detail


# --- scope without an inventory (the `gate` CLI) --------------------------------------------------


async def test_without_an_inventory_the_gate_judges_the_versions_the_ledger_knows(
    ledger: Ledger, settings: Settings
) -> None:
    await healthy(ledger)
    removed = coords("legacy", "0.9.0")
    await ledger.record(mismatch(removed, NOW - 2 * DAY))
    assert (await evaluate(ledger, None, settings, NOW)).verdict == "NO-GO"

    await ledger.observe(INVENTORY, NOW - DAY)  # the platform deleted it; the inventory says so
    verdict = await evaluate(ledger, None, settings, NOW)
    assert verdict.verdict == "GO"
    assert "1 more in versions no longer in scope, not counted" in \
        verdict.condition(GateCondition.NO_FAILURES_IN_WINDOW).detail


async def test_the_verdict_survives_a_restart(settings: Settings) -> None:
    async with SqliteLedger.open(settings.ledger.path) as ledger:
        await healthy(ledger)
        await ledger.record(mismatch(VERSIONS[0], NOW - DAY))
    async with SqliteLedger.open(settings.ledger.path) as ledger:
        verdict = await evaluate(ledger, None, settings, NOW)
    assert verdict.verdict == "NO-GO"
    assert [v["version"] for v in verdict.blocking_versions] == ["1.0.0"]


# --- metrics --------------------------------------------------------------------------------------


async def test_apply_to_metrics_sets_readiness_and_each_condition(ledger: Ledger, settings: Settings) -> None:
    metrics = Metrics(CollectorRegistry())
    await healthy(ledger, since=NOW - 3 * DAY)
    apply_to_metrics(await evaluate(ledger, INVENTORY, settings, NOW), metrics)
    sample = metrics.registry.get_sample_value
    assert sample("artifact_parity_cutover_ready") == 0
    assert sample("artifact_parity_gate_condition", {"condition": "window_observed"}) == 0
    assert sample("artifact_parity_gate_condition", {"condition": "latest_all_match"}) == 1

    await healthy(ledger, since=START, until=NOW - 3 * DAY)
    apply_to_metrics(await evaluate(ledger, INVENTORY, settings, NOW), metrics)
    assert sample("artifact_parity_cutover_ready") == 1
    assert all(sample("artifact_parity_gate_condition", {"condition": c}) == 1 for c in ALL_CONDITIONS)
