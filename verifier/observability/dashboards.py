"""Grafana dashboards, built with grafanalib and rendered to ``dashboards/*.json`` by :mod:`.generate`.

Every panel queries the ``datasource`` template variable, carries a unit and a description, and uses
``$__rate_interval`` for raw rates. Ratios and percentiles that alerts evaluate are read from the
recording rules in :mod:`.rules`, so a panel shows what the alert sees.

Gauges describing the ledger (versions, coverage, scan and signature states) are exported identically
by every replica sharing one ledger: they are folded with ``max by (…)`` before being summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import attr
from grafanalib import core as g

from . import rules

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
TENANT = 'tenant=~"$tenant"'
TAGS = ["parity-verifier"]
SCHEMA_VERSION = 39  # Grafana 10/11: panels with gridPos, datasource references by uid

GREEN, ORANGE, RED, BLUE, GREY = "green", "orange", "red", "blue", "text"


def _steps(*steps: tuple[str, float | None]) -> list[dict[str, Any]]:
    return [{"color": color, "value": value} for color, value in steps]


OK_ABOVE_ZERO_IS_BAD = _steps((GREEN, None), (RED, 1))


def _value_map(mapping: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Grafana value mappings: {raw value: (text, color)}."""
    return [{
        "type": "value",
        "options": {value: {"text": text, "color": color, "index": i}
                    for i, (value, (text, color)) in enumerate(mapping.items())},
    }]


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> g.Target:
    return g.Target(
        expr=expr, legendFormat=legend, refId=ref, instant=instant, datasource=DATASOURCE, intervalFactor=1,
    )


def targets(*pairs: tuple[str, str]) -> list[g.Target]:
    return [target(expr, legend, ref=chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


@dataclass
class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping into new rows."""

    x: int = 0
    y: int = 0
    row_height: int = 0

    def place(self, w: int, h: int) -> g.GridPos:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = g.GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.row_height = max(self.row_height, h)
        return pos

    def row(self, title: str) -> g.RowPanel:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = g.GridPos(h=1, w=24, x=0, y=self.y)
        self.y += 1
        return g.RowPanel(title=title, gridPos=pos)


class Builder:
    """Collects the panels of one dashboard in order, with stable ids and positions."""

    def __init__(self) -> None:
        self.layout = Layout()
        self.panels: list[g.Panel] = []

    def _add(self, panel: g.Panel) -> None:
        self.panels.append(panel)

    def row(self, title: str) -> None:
        self._add(self.layout.row(title))

    def timeseries(
        self, title: str, description: str, unit: str, tgts: list[g.Target], *,
        w: int = 12, h: int = 8, stacked: bool = False, thresholds: list[dict[str, Any]] | None = None,
        min_zero: bool = True, overrides: list[dict[str, Any]] | None = None,
    ) -> None:
        self._add(g.TimeSeries(
            title=title, description=description, unit=unit, targets=tgts, dataSource=DATASOURCE,
            gridPos=self.layout.place(w, h),
            stacking={"mode": "normal", "group": "A"} if stacked else {},
            fillOpacity=30 if stacked else 10,
            valueMin=0 if min_zero else None,
            legendDisplayMode="table", legendPlacement="bottom", legendCalcs=["lastNotNull", "max"],
            tooltipMode="multi", tooltipSort="desc",
            thresholds=thresholds or _steps((GREEN, None)),
            thresholdsStyleMode="line" if thresholds else "off",
            overrides=overrides or [],
        ))

    def stat(
        self, title: str, description: str, unit: str, tgts: list[g.Target], *,
        w: int = 6, h: int = 5, thresholds: list[dict[str, Any]] | None = None,
        mappings: list[dict[str, Any]] | None = None, text_mode: str = "auto", color_mode: str = "value",
        graph: bool = False, no_value: str = "no data",
    ) -> None:
        self._add(g.Stat(
            title=title, description=description, format=unit, targets=tgts, dataSource=DATASOURCE,
            gridPos=self.layout.place(w, h),
            thresholds=thresholds or _steps((BLUE, None)),
            mappings=mappings or [], textMode=text_mode, colorMode=color_mode,
            graphMode="area" if graph else "none", reduceCalc="lastNotNull", noValue=no_value,
        ))

    def state_timeline(
        self, title: str, description: str, unit: str, tgts: list[g.Target], *,
        mappings: list[dict[str, Any]], w: int = 12, h: int = 8,
    ) -> None:
        self._add(g.StateTimeline(
            title=title, description=description, targets=tgts, dataSource=DATASOURCE,
            gridPos=self.layout.place(w, h), mappings=mappings,
            thresholds=_steps((RED, None), (GREEN, 1)),
            extraJson={"fieldConfig": {"defaults": {"unit": unit}}},
        ))

    def dashboard(self, *, title: str, uid: str, description: str, templates: list[g.Template]) -> g.Dashboard:
        panels = [_with_id(p, i) for i, p in enumerate(self.panels, start=1)]
        return g.Dashboard(
            title=title, uid=uid, description=description, tags=TAGS, panels=panels,
            templating=g.Templating(list=templates), timezone="browser", refresh="1m",
            time=g.Time("now-6h", "now"), schemaVersion=SCHEMA_VERSION, graphTooltip=1,
            editable=True,
        )


def _with_id(panel: g.Panel, panel_id: int) -> g.Panel:
    return attr.evolve(panel, id=panel_id)


def datasource_variable() -> g.Template:
    return g.Template(
        name="datasource", label="Data source", type="datasource", query="prometheus",
        default="default", hide=0,
    )


def tenant_variable() -> g.Template:
    template = g.Template(
        name="tenant", label="Tenant", query="label_values(artifact_parity_checks_total, tenant)",
        dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".*", refresh=2, sort=1,
    )
    template._current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return template


# --- 1. parity and cutover ---------------------------------------------------------------------

_GATE_MAPPING = _value_map({"1": ("GO", GREEN), "0": ("NOT READY", RED)})
_CONDITION_MAPPING = _value_map({"1": ("holds", GREEN), "0": ("fails", RED)})


def parity_dashboard() -> g.Dashboard:
    b = Builder()
    b.row("Cutover gate")
    b.stat(
        "Cutover verdict",
        "1 when the cutover gate says GO. Anything else (NO-GO or INCONCLUSIVE) shows NOT READY; "
        "`parity-verifier gate` or /gate says which and why.",
        "bool", [target("min(artifact_parity_cutover_ready)")],
        mappings=_GATE_MAPPING, color_mode="background", thresholds=_steps((RED, None), (GREEN, 1)), w=4,
    )
    b.stat(
        "Coverage",
        "Share of the inventory checked within the coverage window (schedule.coverage_window). "
        "Below 100% the gate cannot say GO.",
        "percentunit", [target("min(artifact_parity_coverage_ratio)")],
        thresholds=_steps((RED, None), (ORANGE, 0.95), (GREEN, 1)), w=5, graph=True,
    )
    b.stat(
        "Overdue versions",
        "Versions checked before but not re-checked within the coverage window "
        f"(recording rule {rules.VERSIONS_OVERDUE}; alert ArtifactParityCoverageBehind).",
        "short", [target(f"round({rules.VERSIONS_OVERDUE})")], thresholds=OK_ABOVE_ZERO_IS_BAD, w=5,
    )
    b.stat(
        "Oldest check",
        "Age of the stalest latest check of any inventory version; unverified versions count from "
        "when they were first seen.",
        "s", [target("max(artifact_parity_oldest_check_age_seconds)")], w=5,
    )
    b.stat(
        "Inventory refresh age",
        "Seconds since the last successful inventory refresh; empty while the last refresh failed "
        "(artifact_parity_inventory_up is 0).",
        "s", [target("time() - max(artifact_parity_inventory_refresh_timestamp_seconds)"
                     " and on () (min(artifact_parity_inventory_up) == 1)")],
        no_value="refresh failing", thresholds=_steps((GREEN, None), (ORANGE, 600), (RED, 1800)), w=5,
    )
    b.state_timeline(
        "Gate conditions",
        "Each cutover condition over time: green while it holds. Every condition must hold for GO.",
        "bool", targets(("min by (condition) (artifact_parity_gate_condition)", "{{condition}}")),
        mappings=_CONDITION_MAPPING, w=24, h=7,
    )

    versions = f"sum by (state) (max by (tenant, state) (artifact_parity_versions{{{TENANT}}}))"
    b.row("Versions")
    b.stat(
        "Versions by latest outcome",
        "Inventory versions of the selected tenants by the outcome of their latest check; "
        "`unverified` were never checked.",
        "short", targets((versions, "{{state}}")), text_mode="value_and_name", w=24, h=4,
    )
    b.timeseries(
        "Versions by state over time",
        "The inventory by latest outcome over time, stacked. Only `match` belongs here before a cutover.",
        "short", targets((versions, "{{state}}")), stacked=True,
    )
    b.timeseries(
        "Mismatched and missing versions by tenant",
        "Versions whose latest check found different bytes (mismatch) or a missing artifact, by tenant. "
        "Any value above zero blocks the cutover.",
        "short", targets((
            f'max by (tenant, state) (artifact_parity_versions{{state=~"mismatch|missing_.*", {TENANT}}}) > 0',
            "{{tenant}} {{state}}",
        )), thresholds=OK_ABOVE_ZERO_IS_BAD,
    )
    b.timeseries(
        "Mismatch and missing outcomes by tenant",
        "Checks ending in mismatch or missing per interval, by tenant: also shows problems that a "
        "later check no longer finds.",
        "short", targets((
            f'sum by (tenant, outcome) (increase(artifact_parity_checks_total{{outcome=~"mismatch|missing_.*", '
            f"{TENANT}}}[$__rate_interval])) > 0",
            "{{tenant}} {{outcome}}",
        )),
    )
    b.timeseries(
        "Faults",
        "Faults observed by checks per second, by fault code (see the report's `faults`).",
        "ops", targets((
            f"sum by (fault) (rate(artifact_parity_faults_total{{{TENANT}}}[$__rate_interval])) > 0",
            "{{fault}}",
        )),
    )

    b.row("Throughput and lag")
    b.timeseries(
        "Checks per second by outcome",
        f"Finished checks per second by outcome over 5 minutes (recording rule {rules.CHECKS_RATE}).",
        "ops", targets((f"sum by (outcome) ({rules.CHECKS_RATE}{{{TENANT}}})", "{{outcome}}")),
        stacked=True,
    )
    b.timeseries(
        "Verification lag",
        "Time from a version's creation (or first sight) to its first check: percentiles over the last "
        "hour (recording rules artifact_parity:verify_lag_seconds:*_rate1h). Not filtered by tenant.",
        "s", targets(*[(rules.verify_lag_quantile(p), p) for p, _ in rules.QUANTILES]),
        thresholds=_steps((GREEN, None), (RED, rules.MAX_VERIFY_LAG_P90_SECONDS)),
    )
    b.timeseries(
        "Check duration",
        "Duration of one whole check (both stores read and hashed), percentiles. Not filtered by tenant.",
        "s", targets(*[(
            f"histogram_quantile({q}, sum by (le) "
            "(rate(artifact_parity_check_duration_seconds_bucket[$__rate_interval])))", p,
        ) for p, q in rules.QUANTILES]),
        w=24,
    )
    return b.dashboard(
        title="Parity verifier / Parity and cutover", uid="parity-verifier-parity",
        description="Does the registry hold the same JAR bytes as the filesystem, and may we cut over?",
        templates=[datasource_variable(), tenant_variable()],
    )


# --- 2. registry health and performance -----------------------------------------------------------

_UP_MAPPING = _value_map({"1": ("UP", GREEN), "0": ("DOWN", RED)})


def registry_dashboard() -> g.Dashboard:
    b = Builder()
    b.row("Registry")
    b.stat(
        "Registry up",
        "Whether the registry's /v2/ endpoint answered the verifier's last probe (the lowest value "
        "across verifier replicas).",
        "bool", [target("min(artifact_parity_registry_up)")], mappings=_UP_MAPPING,
        color_mode="background", thresholds=_steps((RED, None), (GREEN, 1)), w=4, h=8,
    )
    b.timeseries(
        "Registry probe latency",
        "Duration of the last /v2/ probe, per verifier instance.",
        "s", targets(("max by (instance) (artifact_parity_registry_probe_duration_seconds)", "{{instance}}")),
        w=10,
    )
    b.timeseries(
        "Registry error ratio",
        f"Share of registry reads that failed, over 5 minutes (recording rule {rules.READ_ERROR_RATIO}), "
        "beside the filesystem's. The line is the gate's default bound.",
        "percentunit", targets((rules.READ_ERROR_RATIO, "{{store}}")),
        thresholds=_steps((GREEN, None), (RED, rules.MAX_REGISTRY_ERROR_RATIO)), w=10,
    )

    b.row("Reads: filesystem and registry side by side")
    b.timeseries(
        "Read latency percentiles",
        "Time to read and hash one artifact, p50/p90/p99 over 5 minutes, per store "
        "(recording rules artifact_parity:read_duration_seconds:*_rate5m).",
        "s", targets(*[(rules.read_duration_quantile(p), "{{store}} " + p) for p, _ in rules.QUANTILES]),
        thresholds=_steps((GREEN, None), (RED, rules.MAX_REGISTRY_P99_SECONDS)),
    )
    b.timeseries(
        "Read throughput",
        "Artifact bytes read and hashed per second, per store.",
        "Bps", targets(("sum by (store) (rate(artifact_parity_read_bytes_total[$__rate_interval]))", "{{store}}")),
    )
    b.timeseries(
        "Reads per second",
        "Read attempts per second, per store.",
        "rps", targets(("sum by (store) (rate(artifact_parity_reads_total[$__rate_interval]))", "{{store}}")),
    )
    b.timeseries(
        "Read errors by reason",
        "Failed reads per second by store and reason (timeout, unauthorized, server_error, integrity, …). "
        "A missing artifact is an outcome, not a read error.",
        "rps", targets((
            "sum by (store, reason) (rate(artifact_parity_read_errors_total[$__rate_interval])) > 0",
            "{{store}} {{reason}}",
        )), stacked=True,
    )

    b.row("Zot's own metrics (empty unless Prometheus scrapes Zot)")
    b.timeseries(
        "Zot requests by status code",
        "Requests Zot served per second by HTTP status code (zot_http_requests_total).",
        "reqps", targets(("sum by (code) (rate(zot_http_requests_total[$__rate_interval]))", "{{code}}")),
        stacked=True,
    )
    b.timeseries(
        "Zot server error ratio",
        "Share of Zot's responses with a 5xx status, to compare with the verifier's registry error ratio.",
        "percentunit", targets((
            'sum(rate(zot_http_requests_total{code=~"5.."}[$__rate_interval]))\n'
            "/\nsum(rate(zot_http_requests_total[$__rate_interval]))",
            "5xx",
        )),
    )
    b.timeseries(
        "Zot latency p99 by method",
        "Zot's own 99th percentile request latency per HTTP method (zot_http_method_latency_seconds): "
        "server time, without the network the verifier sees.",
        "s", targets((
            "histogram_quantile(0.99, sum by (method, le) "
            "(rate(zot_http_method_latency_seconds_bucket[$__rate_interval])))",
            "{{method}}",
        )),
    )
    b.timeseries(
        "Zot storage by repository (top 10)",
        "Bytes stored per repository in Zot (zot_repo_storage_bytes), the ten largest.",
        "bytes", targets(("topk(10, max by (repo) (zot_repo_storage_bytes))", "{{repo}}")),
    )
    return b.dashboard(
        title="Parity verifier / Registry health and performance", uid="parity-verifier-registry",
        description="Is the registry up, fast and error-free compared with the filesystem?",
        templates=[datasource_variable()],
    )


# --- 3. supply chain ---------------------------------------------------------------------------------

_SEVERITY_COLORS = {"critical": "dark-red", "high": RED, "medium": ORANGE, "low": "yellow", "unknown": GREY}


def _by_name_colors(colors: dict[str, str]) -> list[dict[str, Any]]:
    return [{
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    } for name, color in colors.items()]


def supply_chain_dashboard() -> g.Dashboard:
    b = Builder()
    scan = "max by (max_severity) (artifact_parity_scan_versions)"
    vulns = "max by (severity) (artifact_parity_vulnerabilities)"
    sigs = "max by (status) (artifact_parity_signature_versions)"

    b.row("Vulnerabilities")
    b.stat(
        "Vulnerabilities in the newest versions",
        "CVEs found by Zot's scanner in the newest version of each app, by severity.",
        "short", targets((vulns, "{{severity}}")), text_mode="value_and_name", w=12, h=5,
        thresholds=_steps((GREEN, None), (RED, 1)),
    )
    b.stat(
        "Scan data age",
        "Seconds since scan and signature status were last read from Zot successfully "
        "(zot.scan_refresh). Old data no longer describes the registry.",
        "s", [target("time() - max(artifact_parity_scan_refresh_timestamp_seconds)")],
        thresholds=_steps((GREEN, None), (ORANGE, rules.MAX_SCAN_DATA_AGE_SECONDS / 2),
                          (RED, rules.MAX_SCAN_DATA_AGE_SECONDS)),
        w=6, h=5, no_value="never refreshed",
    )
    b.stat(
        "Signatures required",
        "Whether zot.require_signatures is set: the signature alerts fire only then.",
        "bool", [target("max(artifact_parity_signatures_required)")],
        mappings=_value_map({"1": ("required", BLUE), "0": ("not required", GREY)}), w=6, h=5,
    )
    b.timeseries(
        "Vulnerabilities over time",
        "CVEs in the newest version of each app by severity over time; a drop to zero can also mean "
        "Zot lost its scan cache (restart or vulnerability-DB update).",
        "short", targets((vulns, "{{severity}}")), stacked=True,
    )
    b.timeseries(
        "Versions by scan state",
        "Inventory versions by highest CVE severity found, or not_scanned / not_scannable / error; "
        "`unavailable` when the registry offers no scanning. Raw JAR layers are not scannable by Zot.",
        "short", targets((scan, "{{max_severity}}")), stacked=True,
        overrides=_by_name_colors({**_SEVERITY_COLORS, "none": GREEN}),
    )

    b.row("Signatures")
    b.stat(
        "Signature status",
        "Inventory versions by signature status: trusted, untrusted (signed, but not by a trusted key), "
        "unsigned, or unavailable when neither Zot nor zot.cosign_public_key can tell.",
        "short", targets((sigs, "{{status}}")), text_mode="value_and_name", w=12, h=8,
    )
    b.timeseries(
        "Signature status over time",
        "Inventory versions by signature status over time.",
        "short", targets((sigs, "{{status}}")), stacked=True,
        overrides=_by_name_colors({"trusted": GREEN, "untrusted": RED, "unsigned": ORANGE, "unavailable": GREY}),
    )
    return b.dashboard(
        title="Parity verifier / Supply chain", uid="parity-verifier-supply-chain",
        description="Vulnerability scans and signatures of the inventory's versions, as Zot reports them.",
        templates=[datasource_variable()],
    )


def dashboards() -> dict[str, g.Dashboard]:
    """File stem → dashboard, in a stable order."""
    return {
        "parity": parity_dashboard(),
        "registry": registry_dashboard(),
        "supply-chain": supply_chain_dashboard(),
    }
