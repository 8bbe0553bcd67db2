"""The PromQL lexing the consistency tests rely on: if it missed a name, a typo would pass unnoticed."""

from __future__ import annotations

import pytest

from tests.observability.promql import (
    Matcher,
    duration_seconds,
    label_values_query,
    matchers,
    metric_names,
    ranges,
    substitute_grafana,
)


@pytest.mark.parametrize(("expr", "names"), [
    ("up", {"up"}),
    ('sum by (store, le) (rate(x_bucket{store="oci", le=~"1|2"}[5m]))', {"x_bucket"}),
    ("sum(rate(a_total[$__rate_interval])) by (tenant) / on (tenant) group_left (app) b", {"a_total", "b"}),
    ('histogram_quantile(0.99, sum without (instance) (rate(h_bucket{t=~"$tenant"}[${__rate_interval}])))',
     {"h_bucket"}),
    ("a:b:rate5m > ignoring (store) 2 * c offset 1h", {"a:b:rate5m", "c"}),
    ("time() - max(ts_seconds) > 3600 unless on () (x == bool 1)", {"ts_seconds", "x"}),
    ('absent(m{job="and or sum(by)"}) and n', {"m", "n"}),
    ("max_over_time(g[1h:5m]) >= 1e3 or vector(0)", {"g"}),
    ("topk(10, max by (repo) (zot_repo_storage_bytes))", {"zot_repo_storage_bytes"}),
    ("-m + inf", {"m"}),
])
def test_metric_names_finds_series_and_nothing_else(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_matchers_read_selectors_with_grafana_variables_substituted() -> None:
    expr = 'sum(a{state=~"missing_.*", tenant=~"$tenant"}) / b{store="oci",reason!="timeout"}'
    assert matchers(expr) == [
        Matcher("a", "state", "=~", "missing_.*"),
        Matcher("a", "tenant", "=~", ".*"),
        Matcher("b", "store", "=", "oci"),
        Matcher("b", "reason", "!=", "timeout"),
    ]


def test_grafana_substitution_makes_plain_promql() -> None:
    assert substitute_grafana('rate(a{t=~"${tenant:regex}"}[$__rate_interval])') == 'rate(a{t=~".*"}[5m])'


def test_label_values_query_and_ranges() -> None:
    assert label_values_query("label_values(artifact_parity_checks_total, tenant)") == (
        "artifact_parity_checks_total", "tenant")
    assert label_values_query("query_result(up)") is None
    assert ranges('rate(a{x="[1m]"}[$__rate_interval]) + b[5m:1m]') == ["$__rate_interval", "5m:1m"]


@pytest.mark.parametrize(("text", "seconds"), [("0m", 0), ("15m", 900), ("1h30m", 5400), ("2d", 172800)])
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


def test_duration_seconds_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        duration_seconds("15 minutes")
