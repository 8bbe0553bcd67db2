"""Prometheus recording and alerting rules, as data: rendered to ``alerts/*.yaml`` by :mod:`.generate`.

Recording rules are named ``artifact_parity:<what>:<operation>`` (Prometheus' level:metric:operations
convention, with the project's namespace as level); the labels each one keeps are listed in
``alerts/README.md``. Dashboards read the recorded ratios and percentiles so that a panel shows
exactly what an alert evaluates.

Thresholds are module constants. Where the cutover gate has a configurable bound, the default of that
setting is used here (see DESIGN.md, "Configuration details").
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Where the runbook lives; every alert's runbook_url is this plus "#<alertname in lower case>".
RUNBOOK_BASE_URL = "https://github.com/example/parity-verifier/blob/main/alerts/README.md"

# Scrape job names used by deploy/prometheus/prometheus.yml. Only the "is it scraped at all" alerts
# select on the job: every other rule works whatever the job is called.
VERIFIER_JOB = "parity-verifier"
ZOT_JOB = "zot"

# Thresholds.
MAX_REGISTRY_ERROR_RATIO = 0.01  # gate.max_registry_error_ratio default
REGISTRY_ERROR_RATIO_FACTOR = 2  # ... and at least this many times the filesystem's ratio
MAX_REGISTRY_P99_SECONDS = 5  # gate.max_registry_p99_seconds default
REGISTRY_LATENCY_FACTOR = 4  # ... and at least this many times the filesystem's p99
MAX_VERIFY_LAG_P90_SECONDS = 1800  # new versions should be checked within minutes (new-first)
MAX_SCAN_DATA_AGE_SECONDS = 3600  # zot.scan_refresh defaults to 10m

QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))

# --- recording rule names (dashboards import these) ------------------------------------------------

READS_RATE = "artifact_parity:reads:rate5m"
READ_ERRORS_RATE = "artifact_parity:read_errors:rate5m"
READ_ERROR_RATIO = "artifact_parity:read_error_ratio:rate5m"
CHECKS_RATE = "artifact_parity:checks:rate5m"
VERSIONS_OVERDUE = "artifact_parity:versions_overdue:count"


def read_duration_quantile(p: str) -> str:
    return f"artifact_parity:read_duration_seconds:{p}_rate5m"


def verify_lag_quantile(p: str) -> str:
    return f"artifact_parity:verify_lag_seconds:{p}_rate1h"


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str

    def as_dict(self) -> dict[str, object]:
        return {"record": self.record, "expr": self.expr}


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_BASE_URL}#{self.alert.lower()}"

    def as_dict(self) -> dict[str, object]:
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url,
            },
        }


@dataclass(frozen=True)
class RuleFile:
    """One ``alerts/<name>.yaml`` file holding one rule group."""

    name: str
    group: str
    rules: tuple[RecordingRule | AlertRule, ...]
    interval: str | None = None

    def as_dict(self) -> dict[str, object]:
        group: dict[str, object] = {"name": self.group}
        if self.interval:
            group["interval"] = self.interval
        group["rules"] = [r.as_dict() for r in self.rules]
        return {"groups": [group]}


# Shown in descriptions; `with` leaves the phrase out when metrics.tenant_label is false.
_FOR_TENANT = "{{ with $labels.tenant }} for tenant {{ . }}{{ end }}"


def _recording_rules() -> RuleFile:
    rules: list[RecordingRule] = [
        RecordingRule(READS_RATE, "sum by (store) (rate(artifact_parity_reads_total[5m]))"),
        RecordingRule(READ_ERRORS_RATE, "sum by (store) (rate(artifact_parity_read_errors_total[5m]))"),
        # NaN (no alert, an empty panel) while a store is not read at all.
        RecordingRule(READ_ERROR_RATIO, f"{READ_ERRORS_RATE}\n/\n{READS_RATE}"),
    ]
    for p, q in QUANTILES:
        rules.append(RecordingRule(
            read_duration_quantile(p),
            f"histogram_quantile({q}, sum by (store, le) (rate(artifact_parity_read_duration_seconds_bucket[5m])))",
        ))
    rules.append(RecordingRule(CHECKS_RATE, "sum by (tenant, outcome) (rate(artifact_parity_checks_total[5m]))"))
    # New versions arrive a few at a time: a one-hour window gives the percentiles enough samples.
    for p, q in QUANTILES:
        rules.append(RecordingRule(
            verify_lag_quantile(p),
            f"histogram_quantile({q}, sum by (le) (rate(artifact_parity_verify_lag_seconds_bucket[1h])))",
        ))
    # Versions checked before but not again within the coverage window. coverage_ratio is the share of
    # the whole inventory (unverified versions included) checked within the window, so
    #   overdue = verified versions - coverage_ratio * all versions.
    # Unverified versions are left out on purpose: they are the verification lag's business, and a
    # steady stream of new versions must not look like a scheduler falling behind. `max by` folds
    # replicas sharing one ledger, which all export the same state.
    rules.append(RecordingRule(
        VERSIONS_OVERDUE,
        'sum(max by (tenant, state) (artifact_parity_versions{state!="unverified"}))\n'
        "-\n"
        "min(artifact_parity_coverage_ratio) * sum(max by (tenant, state) (artifact_parity_versions))",
    ))
    return RuleFile("recording", "artifact_parity.recording", tuple(rules))


def _parity_alerts() -> RuleFile:
    return RuleFile("parity", "artifact_parity.parity", (
        AlertRule(
            alert="ArtifactParityMismatch",
            expr='sum by (tenant) (increase(artifact_parity_checks_total{outcome="mismatch"}[15m])) > 0\n'
                 "or\n"
                 'max by (tenant) (artifact_parity_versions{state="mismatch"}) > 0',
            for_="0m",
            severity="critical",
            summary="The registry and the filesystem hold different bytes" + _FOR_TENANT + ".",
            description="At least one version's JAR differs between the filesystem store and the registry"
                        + _FOR_TENANT + ". Do not cut over; find the versions and the wrong side with "
                        "`parity-verifier check --format json`.",
        ),
        AlertRule(
            alert="ArtifactParityMissingInRegistry",
            expr='max by (tenant) (artifact_parity_versions{state="missing_oci"}) > 0',
            for_="15m",
            severity="critical",
            summary="{{ $value | humanize }} versions are missing in the registry" + _FOR_TENANT + ".",
            description="{{ $value | humanize }} inventory versions exist on the filesystem but not in the "
                        "registry" + _FOR_TENANT + " for 15 minutes: the dual write to the registry is "
                        "failing or lagging.",
        ),
        AlertRule(
            alert="ArtifactParityMissingOnFilesystem",
            expr='max by (tenant, state) (artifact_parity_versions{state=~"missing_filesystem|missing_both"}) > 0',
            for_="15m",
            severity="warning",
            summary="{{ $value | humanize }} versions are {{ $labels.state }}" + _FOR_TENANT + ".",
            description="{{ $value | humanize }} inventory versions have the latest outcome "
                        "{{ $labels.state }}" + _FOR_TENANT + ": the inventory lists versions whose file "
                        "is not in the filesystem store.",
        ),
        AlertRule(
            alert="ArtifactParityCheckErrors",
            expr='max by (tenant) (artifact_parity_versions{state="error"}) > 0',
            for_="30m",
            severity="warning",
            summary="{{ $value | humanize }} versions could not be verified" + _FOR_TENANT + ".",
            description="The latest check of {{ $value | humanize }} versions" + _FOR_TENANT + " ended in "
                        "`error` for 30 minutes (timeout, refused, unauthorized, unreadable): parity of these "
                        "versions is unknown and the gate stays INCONCLUSIVE.",
        ),
        AlertRule(
            alert="ArtifactParityCoverageBehind",
            expr=f"{VERSIONS_OVERDUE} > 0.5",
            for_="30m",
            severity="warning",
            summary="{{ $value | humanize }} versions were not re-checked within the coverage window.",
            description="{{ $value | humanize }} versions have not been re-checked within "
                        "`schedule.coverage_window`: the verifier cannot keep up with the inventory at its "
                        "configured concurrency and budgets.",
        ),
        AlertRule(
            alert="ArtifactParityVerifyLagHigh",
            expr=f'{verify_lag_quantile("p90")} > {MAX_VERIFY_LAG_P90_SECONDS}',
            for_="15m",
            severity="warning",
            summary="New versions wait {{ $value | humanizeDuration }} for their first check (p90).",
            description="90% of the versions first checked in the last hour waited up to "
                        "{{ $value | humanizeDuration }} after their creation; the threshold is "
                        f"{MAX_VERIFY_LAG_P90_SECONDS // 60} minutes.",
        ),
    ))


def _verifier_alerts() -> RuleFile:
    job = f'job="{VERIFIER_JOB}"'
    return RuleFile("verifier", "artifact_parity.verifier", (
        AlertRule(
            alert="ArtifactParityVerifierDown",
            expr=f"up{{{job}}} == 0",
            for_="5m",
            severity="critical",
            summary="Prometheus cannot scrape the parity verifier at {{ $labels.instance }}.",
            description="The parity-verifier target {{ $labels.instance }} has been down for 5 minutes. "
                        "While it is down no mismatch can be detected or alerted on.",
        ),
        AlertRule(
            alert="ArtifactParityMetricsAbsent",
            expr=f"absent(artifact_parity_build_info{{{job}}})\nunless on ()\n(up{{{job}}} == 0)",
            for_="10m",
            severity="critical",
            summary=f'No parity verifier metrics in job "{VERIFIER_JOB}".',
            description=f'Prometheus has no artifact_parity_build_info series for job="{VERIFIER_JOB}" '
                        "for 10 minutes, and no down target explains it: the verifier is not deployed, "
                        "not discovered, or scraped under another job name.",
        ),
        AlertRule(
            alert="ArtifactParityInventoryDown",
            expr="artifact_parity_inventory_up == 0",
            for_="10m",
            severity="warning",
            summary="The verifier at {{ $labels.instance }} cannot read the inventory.",
            description="The last inventory refreshes failed for 10 minutes: new versions are not "
                        "picked up and the verifier works from a stale list.",
        ),
    ))


def _registry_alerts() -> RuleFile:
    # `ignoring (store)` drops `store` from a one-to-one comparison's result, hence also on `and`; the
    # alert keeps the left side's labels (store="oci").
    oci_ratio = f'{READ_ERROR_RATIO}{{store="oci"}}'
    fs_ratio = f'{READ_ERROR_RATIO}{{store="filesystem"}}'
    oci_p99 = f'{read_duration_quantile("p99")}{{store="oci"}}'
    fs_p99 = f'{read_duration_quantile("p99")}{{store="filesystem"}}'
    return RuleFile("registry", "artifact_parity.registry", (
        AlertRule(
            alert="ArtifactParityRegistryDown",
            expr="artifact_parity_registry_up == 0",
            for_="5m",
            severity="critical",
            summary="The registry does not answer the verifier at {{ $labels.instance }}.",
            description="The registry's /v2/ probe has failed for 5 minutes. Every registry read fails; "
                        "if the platform already reads from the registry, users are affected.",
        ),
        AlertRule(
            alert="ArtifactParityRegistryErrorRatioHigh",
            expr=f"({oci_ratio} > {MAX_REGISTRY_ERROR_RATIO})\nand ignoring (store)\n"
                 f"({oci_ratio} > ignoring (store) {REGISTRY_ERROR_RATIO_FACTOR} * {fs_ratio})",
            for_="10m",
            severity="warning",
            summary="{{ $value | humanizePercentage }} of registry reads fail.",
            description="{{ $value | humanizePercentage }} of registry reads failed over 5 minutes for 10 "
                        f"minutes, above {MAX_REGISTRY_ERROR_RATIO:.0%} and {REGISTRY_ERROR_RATIO_FACTOR} "
                        "times the filesystem's error ratio. The cutover gate fails above "
                        "gate.max_registry_error_ratio.",
        ),
        AlertRule(
            alert="ArtifactParityRegistryLatencyHigh",
            expr=f"({oci_p99} > {MAX_REGISTRY_P99_SECONDS})\nand ignoring (store)\n"
                 f"({oci_p99} > ignoring (store) {REGISTRY_LATENCY_FACTOR} * {fs_p99})",
            for_="15m",
            severity="warning",
            summary="Registry reads take {{ $value | humanizeDuration }} (p99).",
            description="The 99th percentile of registry reads is {{ $value | humanizeDuration }}, above "
                        f"{MAX_REGISTRY_P99_SECONDS}s and {REGISTRY_LATENCY_FACTOR} times the filesystem's, "
                        "for 15 minutes. The cutover gate fails above gate.max_registry_p99_seconds.",
        ),
    ))


def _supply_chain_alerts() -> RuleFile:
    required = "on () (max(artifact_parity_signatures_required) == 1)"
    return RuleFile("supply-chain", "artifact_parity.supply_chain", (
        AlertRule(
            alert="ArtifactParityCriticalVulnerabilities",
            # No `by (severity)`: the CVE severity would clash with the alert's own `severity` label.
            expr='max(artifact_parity_vulnerabilities{severity="critical"}) > 0',
            for_="0m",
            severity="warning",
            summary="{{ $value | humanize }} critical CVEs in the newest versions of the apps.",
            description="Zot's scanner reports {{ $value | humanize }} critical vulnerabilities in the "
                        "newest version of the applications in the inventory.",
        ),
        AlertRule(
            alert="ArtifactParityScanErrors",
            expr='max by (max_severity) (artifact_parity_scan_versions{max_severity="error"}) > 0',
            for_="1h",
            severity="warning",
            summary="The scan status of {{ $value | humanize }} versions cannot be read.",
            description="For an hour, Zot answered with an error for the vulnerability summary of "
                        "{{ $value | humanize }} versions (forbidden, image not found, scanner failure).",
        ),
        AlertRule(
            alert="ArtifactParityScanDataStale",
            expr="(time() - max(artifact_parity_scan_refresh_timestamp_seconds))"
                 f" > {MAX_SCAN_DATA_AGE_SECONDS}\n"
                 'unless on ()\n(max(artifact_parity_scan_versions{max_severity="unavailable"}) > 0)',
            for_="15m",
            severity="warning",
            summary="Scan and signature data is {{ $value | humanizeDuration }} old.",
            description="The last successful refresh of scan and signature status from Zot is "
                        "{{ $value | humanizeDuration }} old (more than "
                        f"{MAX_SCAN_DATA_AGE_SECONDS // 60} minutes): the vulnerability and signature "
                        "figures no longer describe the registry.",
        ),
        AlertRule(
            alert="ArtifactParityUntrustedSignatures",
            expr='max by (status) (artifact_parity_signature_versions{status="untrusted"}) > 0\n'
                 f"and {required}",
            for_="15m",
            severity="critical",
            summary="{{ $value | humanize }} versions carry signatures that do not verify.",
            description="Signatures are required (zot.require_signatures) and {{ $value | humanize }} "
                        "versions are signed, but not by a trusted key: a tampered artifact, or a key "
                        "missing from Zot's trust store or zot.cosign_public_key.",
        ),
        AlertRule(
            alert="ArtifactParitySignaturesMissing",
            expr='max by (status) (artifact_parity_signature_versions{status=~"unsigned|unavailable"}) > 0\n'
                 f"and {required}",
            for_="30m",
            severity="warning",
            summary="{{ $value | humanize }} versions have signature status {{ $labels.status }}.",
            description="Signatures are required (zot.require_signatures) but {{ $value | humanize }} "
                        "versions are {{ $labels.status }} for 30 minutes.",
        ),
    ))


def rule_files() -> tuple[RuleFile, ...]:
    """Every rule file, in a stable order."""
    return (
        _recording_rules(),
        _parity_alerts(),
        _verifier_alerts(),
        _registry_alerts(),
        _supply_chain_alerts(),
    )


def alerts() -> tuple[AlertRule, ...]:
    return tuple(r for f in rule_files() for r in f.rules if isinstance(r, AlertRule))


def recording_rules() -> tuple[RecordingRule, ...]:
    return tuple(r for f in rule_files() for r in f.rules if isinstance(r, RecordingRule))
