"""Every metric the sidecar exports: the contract that dashboards and alert rules are built on.

Metrics are created on an injected ``CollectorRegistry`` (no import-time global state), so each test
and each process gets its own. Results become metrics in exactly one place, :meth:`Metrics.record_check`.
Label values come from the fixed sets below and exist at 0 from start; a version, digest or path is
never a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from . import __version__
from .model import CheckResult, Fault, GateCondition, Outcome, ReadErrorReason

PREFIX = "artifact_parity_"

OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
STATES: tuple[str, ...] = (*OUTCOMES, "unverified")
FAULTS: tuple[str, ...] = tuple(f.value for f in Fault)
STORES: tuple[str, ...] = ("filesystem", "oci")
READ_ERROR_REASONS: tuple[str, ...] = tuple(r.value for r in ReadErrorReason)
SCAN_STATES: tuple[str, ...] = (
    "none", "unknown", "low", "medium", "high", "critical",
    "not_scanned", "not_scannable", "error", "unavailable",
)
SEVERITIES: tuple[str, ...] = ("unknown", "low", "medium", "high", "critical")
SIGNATURE_STATUSES: tuple[str, ...] = ("trusted", "untrusted", "unsigned", "unavailable")
GATE_CONDITIONS: tuple[str, ...] = tuple(c.value for c in GateCondition)
OTHER_TENANT = "_other"

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LAG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        tenant_label: bool = True,
        max_tenants: int = 100,
    ) -> None:
        disable_created_metrics()  # `_created` series double the scrape and no rule uses them
        self.registry = registry if registry is not None else CollectorRegistry()
        self.tenant_label = tenant_label
        self.max_tenants = max_tenants
        self._tenants: set[str] = set()
        r = self.registry
        t = ("tenant",) if tenant_label else ()

        # --- checks -----------------------------------------------------------------------------
        self.checks = Counter(
            PREFIX + "checks", "Checks of one version finished, by outcome.", ("outcome", *t), registry=r
        )
        self.faults = Counter(
            PREFIX + "faults", "Faults observed by checks, by fault code.", ("fault", *t), registry=r
        )
        self.check_duration = Histogram(
            PREFIX + "check_duration_seconds", "Duration of one whole check (both stores).",
            buckets=_DURATION_BUCKETS, registry=r,
        )
        self.read_duration = Histogram(
            PREFIX + "read_duration_seconds", "Duration of reading and hashing one artifact from a store.",
            ("store",), buckets=_DURATION_BUCKETS, registry=r,
        )
        self.reads = Counter(PREFIX + "reads", "Read attempts per store.", ("store",), registry=r)
        self.read_bytes = Counter(
            PREFIX + "read_bytes", "Artifact bytes read and hashed per store.", ("store",), registry=r
        )
        self.read_errors = Counter(
            PREFIX + "read_errors", "Reads that failed for a reason other than 'not there'.",
            ("store", "reason"), registry=r,
        )

        # --- inventory state --------------------------------------------------------------------
        self.versions = Gauge(
            PREFIX + "versions", "Inventory versions by latest outcome, or unverified.", ("state", *t),
            registry=r,
        )
        self.coverage_ratio = Gauge(
            PREFIX + "coverage_ratio", "Share of the inventory checked within the coverage window.", registry=r
        )
        self.oldest_check_age = Gauge(
            PREFIX + "oldest_check_age_seconds",
            "Age of the stalest latest check of any inventory version (unverified versions count from "
            "when they were first seen).", registry=r,
        )
        self.verify_lag = Histogram(
            PREFIX + "verify_lag_seconds", "From a version's creation (or first sight) to its first check.",
            buckets=_LAG_BUCKETS, registry=r,
        )
        self.inventory_up = Gauge(
            PREFIX + "inventory_up", "1 when the last inventory refresh succeeded.", registry=r
        )
        self.inventory_refresh_timestamp = Gauge(
            PREFIX + "inventory_refresh_timestamp_seconds", "Unix time of the last successful inventory refresh.",
            registry=r,
        )

        # --- registry health --------------------------------------------------------------------
        self.registry_up = Gauge(PREFIX + "registry_up", "1 when the registry's /v2/ probe succeeded.", registry=r)
        self.registry_probe_duration = Gauge(
            PREFIX + "registry_probe_duration_seconds", "Duration of the last /v2/ probe.", registry=r
        )

        # --- supply chain (Zot) -----------------------------------------------------------------
        self.scan_versions = Gauge(
            PREFIX + "scan_versions", "Inventory versions by highest CVE severity or scan state.",
            ("max_severity",), registry=r,
        )
        self.vulnerabilities = Gauge(
            PREFIX + "vulnerabilities", "CVEs in the newest version of each app, by severity.",
            ("severity",), registry=r,
        )
        self.signature_versions = Gauge(
            PREFIX + "signature_versions", "Inventory versions by signature status.", ("status",), registry=r
        )
        self.scan_refresh_timestamp = Gauge(
            PREFIX + "scan_refresh_timestamp_seconds", "Unix time of the last successful scan-status refresh.",
            registry=r,
        )
        # zot.require_signatures as a series, so that signature alerts fire only where signing is required.
        self.signatures_required = Gauge(
            PREFIX + "signatures_required", "1 when zot.require_signatures is set.", registry=r
        )

        # --- gate -------------------------------------------------------------------------------
        self.cutover_ready = Gauge(
            PREFIX + "cutover_ready", "1 when the cutover gate says GO.", registry=r
        )
        self.gate_condition = Gauge(
            PREFIX + "gate_condition", "1 when the named gate condition holds.", ("condition",), registry=r
        )
        self.build_info = Gauge(PREFIX + "build_info", "Build information.", ("version",), registry=r)
        self.build_info.labels(version=__version__).set(1)

        self._prefill()

    # --- label handling ---------------------------------------------------------------------------

    def _prefill(self) -> None:
        for store in STORES:
            self.reads.labels(store=store)
            self.read_bytes.labels(store=store)
            self.read_duration.labels(store=store)
            for reason in READ_ERROR_REASONS:
                self.read_errors.labels(store=store, reason=reason)
        for state in SCAN_STATES:
            self.scan_versions.labels(max_severity=state)
        for sev in SEVERITIES:
            self.vulnerabilities.labels(severity=sev)
        for status in SIGNATURE_STATUSES:
            self.signature_versions.labels(status=status)
        for cond in GATE_CONDITIONS:
            self.gate_condition.labels(condition=cond)
        if not self.tenant_label:
            self._prefill_per_check(None)

    def _prefill_per_check(self, tenant: str | None) -> None:
        extra = {"tenant": tenant} if tenant is not None else {}
        for outcome in OUTCOMES:
            self.checks.labels(outcome=outcome, **extra)
        for fault in FAULTS:
            self.faults.labels(fault=fault, **extra)
        for state in STATES:
            self.versions.labels(state=state, **extra)

    def tenant(self, tenant: str) -> str:
        """The label value for a tenant: itself while under metrics.max_tenants, else `_other`."""
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) >= self.max_tenants:
            if OTHER_TENANT not in self._tenants:
                self._tenants.add(OTHER_TENANT)
                self._prefill_per_check(OTHER_TENANT)
            return OTHER_TENANT
        self._tenants.add(tenant)
        self._prefill_per_check(tenant)
        return tenant

    def declare_tenants(self, tenants: Iterable[str]) -> None:
        """Create every per-tenant series at 0 as soon as the inventory names the tenant."""
        if self.tenant_label:
            for tenant in sorted(set(tenants)):
                self.tenant(tenant)

    def _t(self, tenant: str) -> dict[str, str]:
        return {"tenant": self.tenant(tenant)} if self.tenant_label else {}

    # --- recording --------------------------------------------------------------------------------

    def record_check(self, result: CheckResult) -> None:
        """The one place where a check result becomes metrics."""
        labels = self._t(result.coordinates.tenant)
        self.checks.labels(outcome=result.outcome.value, **labels).inc()
        for fault in result.faults:
            self.faults.labels(fault=fault.value, **labels).inc()
        self.check_duration.observe(result.duration_seconds)
        for store, read in (("filesystem", result.filesystem.read), ("oci", result.oci.read)):
            if not read.attempted:
                continue
            self.reads.labels(store=store).inc()
            self.read_bytes.labels(store=store).inc(read.bytes)
            if read.error is not None:
                self.read_errors.labels(store=store, reason=read.error.value).inc()
            else:
                self.read_duration.labels(store=store).observe(read.seconds)

    def set_version_states(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the `versions` gauge with counts keyed by (state, tenant)."""
        totals: dict[tuple[str, str | None], int] = {}
        for (state, tenant), n in counts.items():
            key = (state, self.tenant(tenant) if self.tenant_label else None)
            totals[key] = totals.get(key, 0) + n
        tenants: set[str | None] = {None} if not self.tenant_label else set[str | None](self._tenants)
        for label in tenants:
            for state in STATES:
                extra = {"tenant": label} if label is not None else {}
                self.versions.labels(state=state, **extra).set(totals.get((state, label), 0))

    def set_scan_states(self, counts: Mapping[str, int]) -> None:
        for state in SCAN_STATES:
            self.scan_versions.labels(max_severity=state).set(counts.get(state, 0))

    def set_vulnerabilities(self, counts: Mapping[str, int]) -> None:
        for sev in SEVERITIES:
            self.vulnerabilities.labels(severity=sev).set(counts.get(sev, 0))

    def set_signature_states(self, counts: Mapping[str, int]) -> None:
        for status in SIGNATURE_STATUSES:
            self.signature_versions.labels(status=status).set(counts.get(status, 0))

    def set_gate(self, ready: bool, conditions: Mapping[str, bool]) -> None:
        self.cutover_ready.set(1 if ready else 0)
        for cond in GATE_CONDITIONS:
            self.gate_condition.labels(condition=cond).set(1 if conditions.get(cond) else 0)

