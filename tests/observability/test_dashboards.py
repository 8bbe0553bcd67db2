"""Dashboard lint: what a user of the dashboards would trip over."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.observability.conftest import Promtool, dashboard_expressions, data_panels
from tests.observability.promql import (
    GRAFANA_BUILTIN_DURATIONS,
    grafana_variables,
    ranges,
    substitute_grafana,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Bookmarks, links and provisioning depend on these: change one only on purpose.
EXPECTED_UIDS = {
    "parity": "parity-verifier-parity",
    "registry": "parity-verifier-registry",
    "supply-chain": "parity-verifier-supply-chain",
}


def test_dashboards_exist_with_their_stable_uids(dashboards: dict[str, dict[str, Any]]) -> None:
    assert {stem: d["uid"] for stem, d in dashboards.items()} == EXPECTED_UIDS


def test_every_dashboard_has_a_prometheus_datasource_variable(dashboards: dict[str, dict[str, Any]]) -> None:
    for stem, dashboard in dashboards.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", stem
        assert variables["datasource"]["query"] == "prometheus", stem


def test_the_parity_dashboard_filters_by_tenant(dashboards: dict[str, dict[str, Any]]) -> None:
    tenant = {v["name"]: v for v in dashboards["parity"]["templating"]["list"]}["tenant"]
    assert tenant["query"] == "label_values(artifact_parity_checks_total, tenant)"
    assert tenant["datasource"] == DATASOURCE
    assert tenant["includeAll"] and tenant["multi"] and tenant["allValue"] == ".*"
    filtered = [title for title, expr in dashboard_expressions(dashboards["parity"]) if '"$tenant"' in expr]
    assert len(filtered) >= 5, filtered


def _all_panels() -> list[tuple[str, dict[str, Any]]]:
    root = Path(__file__).resolve().parents[2] / "dashboards"
    return [(f"{p.stem}: {panel['title']}", panel)
            for p in sorted(root.glob("*.json")) for panel in data_panels(json.loads(p.read_text()))]


@pytest.mark.parametrize(("where", "panel"), _all_panels(), ids=[w for w, _ in _all_panels()])
def test_panel_has_description_unit_and_datasource_variable(where: str, panel: dict[str, Any]) -> None:
    assert 20 <= len((panel.get("description") or "").strip()) <= 300, "a short description is required"
    assert panel["fieldConfig"]["defaults"].get("unit"), "a unit is required"
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"], "a panel without a query"
    for target in panel["targets"]:
        assert target["datasource"] == DATASOURCE
        assert target["expr"].strip()


def test_every_range_in_a_dashboard_is_the_rate_interval(dashboards: dict[str, dict[str, Any]]) -> None:
    bad = [(stem, title, r) for stem, d in dashboards.items() for title, expr in dashboard_expressions(d)
           for r in ranges(expr) if r != "$__rate_interval"]
    assert not bad, "dashboards must use [$__rate_interval] (or a recording rule), found: " + repr(bad)


def test_dashboards_use_only_variables_they_define(dashboards: dict[str, dict[str, Any]]) -> None:
    for stem, dashboard in dashboards.items():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | set(GRAFANA_BUILTIN_DURATIONS)
        used = {v for _, expr in dashboard_expressions(dashboard) for v in grafana_variables(expr)}
        assert used <= defined, f"{stem} uses undefined variables {sorted(used - defined)}"


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboards: dict[str, dict[str, Any]]) -> None:
    for stem, dashboard in dashboards.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), stem
        boxes = [(p["title"], p["gridPos"]) for p in dashboard["panels"]]
        for (t1, a), (t2, b) in itertools.combinations(boxes, 2):
            assert a["x"] + a["w"] <= 24, f"{stem}: {t1} is wider than the grid"
            overlap = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and \
                a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
            assert not overlap, f"{stem}: panels {t1!r} and {t2!r} overlap"


def test_every_dashboard_expression_parses(
    dashboards: dict[str, dict[str, Any]], promtool: Promtool, tmp_path: Path,
) -> None:
    """promtool parses each query, Grafana variables substituted, as a recording rule."""
    rules = [{"record": f"dashboard:expr_{i}", "expr": substitute_grafana(expr)}
             for i, (_, expr) in enumerate(e for d in dashboards.values() for e in dashboard_expressions(d))]
    assert len(rules) > 30
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = promtool.run("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_show_what_the_alerts_evaluate(dashboards: dict[str, dict[str, Any]]) -> None:
    exprs = " ".join(e for d in dashboards.values() for _, e in dashboard_expressions(d))
    for recorded in ("artifact_parity:read_error_ratio:rate5m", "artifact_parity:read_duration_seconds:p99_rate5m",
                     "artifact_parity:verify_lag_seconds:p90_rate1h", "artifact_parity:versions_overdue:count",
                     "artifact_parity:checks:rate5m"):
        assert recorded in exprs, recorded
