"""Every series a dashboard or rule reads exists: exported by the sidecar, Zot's own, or recorded here.

The sidecar's series come from a real HTTP scrape (fixture `metrics_exposition`), so a renamed metric
or a label value that the sidecar never emits fails here instead of leaving an empty panel or an
alert that can never fire.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.conftest import dashboard_expressions
from tests.observability.promql import label_values_query, matchers, metric_names

# Zot's series as listed in the shared zot-api.md ("Zot's own Prometheus metrics"), with the sample
# suffixes of their types. zot_scheduler_* is a prefix there.
ZOT_HISTOGRAMS = {"zot_http_method_latency_seconds", "zot_storage_lock_latency_seconds", "zot_gc_duration_seconds"}
ZOT_SUMMARIES = {"zot_http_repo_latency_seconds"}
ZOT_PLAIN = {"zot_http_requests_total", "zot_repo_storage_bytes", "zot_repo_uploads_total",
             "zot_repo_downloads_total", "zot_info", "zot_gc_runs_total", "zot_gc_deleted_total"}
ZOT_PREFIXES = ("zot_scheduler_",)
# Series Prometheus itself writes for every target.
PROMETHEUS_SYNTHETIC = {"up"}
# Labels that come from the scrape or from Grafana, not from the sidecar's fixed label-value sets.
UNCHECKED_LABELS = {"job", "instance", "tenant", "le"}


def _zot_series() -> set[str]:
    names = set(ZOT_PLAIN)
    for h in ZOT_HISTOGRAMS:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    for s in ZOT_SUMMARIES:
        names |= {s, s + "_sum", s + "_count"}
    return names


@pytest.fixture(scope="session")
def exported(metrics_exposition: str) -> dict[str, dict[str, set[str]]]:
    """Sample name → label → values, from the scrape."""
    series: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(metrics_exposition):
        for sample in family.samples:
            labels = series[sample.name]
            for label, value in sample.labels.items():
                labels[label].add(value)
    return series


def _expressions(dashboards: dict[str, dict[str, Any]], rules: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    found = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in rules]
    for stem, d in dashboards.items():
        found += [(f"dashboard {stem}: {title}", expr) for title, expr in dashboard_expressions(d)]
        for variable in d["templating"]["list"]:
            if variable["type"] == "query":
                parsed = label_values_query(variable["query"])
                assert parsed, f"{stem}: variable {variable['name']} is not a label_values() query"
                found.append((f"dashboard {stem}: variable {variable['name']}", parsed[0]))
    return found


def test_the_scrape_carries_the_contract(exported: dict[str, dict[str, set[str]]]) -> None:
    """The fixture really scraped the sidecar's metrics, per-tenant series included."""
    assert exported["artifact_parity_checks_total"]["tenant"] == {"acme"}
    assert "mismatch" in exported["artifact_parity_checks_total"]["outcome"]
    assert "artifact_parity_read_duration_seconds_bucket" in exported


def test_every_series_read_by_dashboards_and_rules_exists(
    exported: dict[str, dict[str, set[str]]], dashboards: dict[str, dict[str, Any]],
    rules: Sequence[dict[str, Any]], recording_rules: Sequence[dict[str, Any]],
) -> None:
    known = set(exported) | _zot_series() | PROMETHEUS_SYNTHETIC | {r["record"] for r in recording_rules}
    unknown = [(where, name) for where, expr in _expressions(dashboards, rules) for name in metric_names(expr)
               if name not in known and not name.startswith(ZOT_PREFIXES)]
    assert not unknown, "series nobody exports or records:\n" + "\n".join(f"  {w}: {n}" for w, n in unknown)


def test_sidecar_series_are_used_with_label_values_it_emits(
    exported: dict[str, dict[str, set[str]]], dashboards: dict[str, dict[str, Any]],
    rules: Sequence[dict[str, Any]],
) -> None:
    """A typo such as state="mising_oci" makes a panel empty and an alert silent forever."""
    # Recorded series keep labels of the sidecar's series: check their values against any of them.
    any_series: dict[str, set[str]] = defaultdict(set)
    for labels in exported.values():
        for label, values in labels.items():
            any_series[label] |= values
    problems = []
    for where, expr in _expressions(dashboards, rules):
        for m in matchers(expr):
            if m.label in UNCHECKED_LABELS or m.metric.startswith("zot_") or m.metric in PROMETHEUS_SYNTHETIC:
                continue
            values = any_series[m.label] if ":" in m.metric else exported.get(m.metric, {}).get(m.label, set())
            if not values:
                problems.append(f"{where}: {m.metric} has no label {m.label!r}")
            elif m.op in ("=", "!=") and m.value not in values:
                problems.append(f"{where}: {m.metric}{{{m.label}{m.op}{m.value!r}}} never matches")
            elif m.op in ("=~", "!~") and not any(re.fullmatch(m.value, v) for v in values):
                problems.append(f"{where}: {m.metric}{{{m.label}{m.op}{m.value!r}}} never matches")
            elif m.op == "=~" and "|" in m.value:
                missing = [alt for alt in m.value.split("|") if not any(re.fullmatch(alt, v) for v in values)]
                if missing:
                    problems.append(f"{where}: {m.metric}{{{m.label}=~...}}: {missing} never match")
    assert not problems, "\n".join(problems)


def test_every_recording_rule_is_used(
    dashboards: dict[str, dict[str, Any]], rules: Sequence[dict[str, Any]],
    recording_rules: Sequence[dict[str, Any]],
) -> None:
    """Prometheus evaluates every rule every cycle: one that nothing reads is cost without use."""
    used = {name for _, expr in _expressions(dashboards, rules) for name in metric_names(expr)}
    unused = [r["record"] for r in recording_rules if r["record"] not in used]
    assert not unused, unused
