"""Every scan situation of zot-api.md, as the metrics and the status page show it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.support.zot_emulator import ZotEmulator
from tests.zot.helpers import (
    Apps,
    only_scan,
    scan_gauge,
    signature_gauge,
    vulnerability_gauge,
)
from verifier.metrics import SEVERITIES, Metrics
from verifier.stores.oci import RegistryTransport
from verifier.zot import ScanState, ZotMonitor, scan_state_of


@dataclass
class Case:
    name: str
    setup: Callable[[ZotEmulator, str], None]  # (emulator, "repo:tag")
    state: str
    counts: dict[str, int]
    scannable: bool = True
    push: bool = True
    detail: str | None = None  # a substring of the version's detail


def counts(**kw: int) -> dict[str, int]:
    return {s: kw.get(s, 0) for s in SEVERITIES}


CASES = [
    Case("clean", lambda z, r: z.set_scan(r), "none", counts()),
    Case("unknown", lambda z, r: z.set_scan(r, counts={"UNKNOWN": 2}), "unknown", counts(unknown=2)),
    Case("low", lambda z, r: z.set_scan(r, counts={"LOW": 3, "UNKNOWN": 1}), "low", counts(low=3, unknown=1)),
    Case("medium", lambda z, r: z.set_scan(r, counts={"MEDIUM": 1, "LOW": 4}), "medium", counts(medium=1, low=4)),
    Case("high", lambda z, r: z.set_scan(r, counts={"HIGH": 2, "MEDIUM": 1}), "high", counts(high=2, medium=1)),
    Case("critical", lambda z, r: z.set_scan(r, counts={"CRITICAL": 1, "HIGH": 5, "LOW": 7}), "critical",
         counts(critical=1, high=5, low=7)),
    Case("not scanned yet", lambda z, r: None, "not_scanned", counts()),
    Case("not scannable (raw application/java-archive layer)", lambda z, r: None, "not_scannable", counts(),
         scannable=False, detail="scanning is not supported for given media type: layer media type "
                                 "'application/java-archive'"),
    Case("not scannable, before v2.1.11", lambda z, r: setattr(z, "legacy_scan_message", True),
         "not_scannable", counts(), scannable=False, detail="for given image media type"),
    Case("vulnerability DB not downloaded", lambda z, r: setattr(z, "cve_db_present", False), "not_scanned",
         counts(), detail="cve-db is not present"),
    Case("cve search disabled", lambda z, r: setattr(z, "cve_enabled", False), "unavailable", counts(),
         detail="cve search is disabled"),
    Case("scanner failure", lambda z, r: z.set_scan_error(r, "failed to analyze artifact: timeout"), "error",
         counts(), detail="failed to analyze artifact"),
    Case("forbidden (all-null object)", lambda z, r: z.forbid(r.split(":")[0]), "error", counts(),
         detail="not found or forbidden"),
    Case("can't find image", lambda z, r: None, "error", counts(), push=False, detail="can't find image: "),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_scan_state_reaches_the_metrics(case: Case, zot: ZotEmulator, zot_transport: RegistryTransport,
                                              apps: Apps, metrics: Metrics) -> None:
    if case.push:
        apps.push("orders", "1.0.0", scannable=case.scannable)
    case.setup(zot, apps.reference("orders", "1.0.0"))
    monitor = ZotMonitor(zot_transport)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)

    assert scan_gauge(metrics) == only_scan(case.state)
    # the single version is the app's newest: its CVEs are what the vulnerability gauge shows
    assert vulnerability_gauge(metrics) == {k: float(v) for k, v in case.counts.items()}
    (version,) = snapshot.versions
    assert version.scan == ScanState(case.state)
    if case.detail:
        assert version.detail is not None and case.detail in version.detail
    assert snapshot.complete  # every one of these is an answer from Zot, not a failure to ask
    assert zot.cve_list_calls == 0  # the metrics never trigger a blocking on-demand scan


async def test_many_states_in_one_refresh(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                          metrics: Metrics) -> None:
    """A batch mixing answers with resolver errors: Zot voids `data`, the client asks again without them."""
    for version, scannable in (("1", True), ("2", True), ("3", False), ("4", True)):
        apps.push("orders", version, scannable=scannable)
    zot.set_scan(apps.reference("orders", "1"), counts={"HIGH": 1})
    zot.set_scan(apps.reference("orders", "2"))
    apps.push("forbidden", "1")
    zot.forbid(apps.repository("forbidden"))
    items = [apps.item("orders", v) for v in ("1", "2", "3", "4", "5", "6")] + [apps.item("forbidden", "1")]

    monitor = ZotMonitor(zot_transport)
    snapshot = await monitor.refresh(items)
    monitor.apply(snapshot, metrics)

    assert scan_gauge(metrics) == {**only_scan("none", 0), "high": 1, "none": 1, "not_scannable": 1, "not_scanned": 1,
                                   "error": 3}
    by_version = {(v.coordinates.app, v.coordinates.version): v for v in snapshot.versions}
    assert by_version["orders", "5"].detail == f"can't find image: {apps.reference('orders', '5')}"
    assert by_version["orders", "6"].detail == f"can't find image: {apps.reference('orders', '6')}"
    assert "forbidden" in (by_version["forbidden", "1"].detail or "")
    assert by_version["orders", "1"].vulnerabilities["high"] == 1
    # the partial (not scannable) error survived the retry and still names its version
    assert by_version["orders", "3"].scan is ScanState.NOT_SCANNABLE
    # Zot reports every failing alias at once: one retry
    assert zot.image_queries == 2
    assert signature_gauge(metrics) == {"trusted": 0, "untrusted": 0, "unsigned": 4, "unavailable": 3}


@pytest.mark.parametrize(("image", "messages", "state"), [
    ({"Vulnerabilities": {"MaxSeverity": "", "Count": 0}, "RepoName": "a"}, [], "not_scanned"),
    ({"Vulnerabilities": {"MaxSeverity": "NONE", "Count": 0}, "RepoName": "a"}, [], "none"),
    ({"Vulnerabilities": {"MaxSeverity": "critical", "Count": 1}, "RepoName": "a"}, [], "critical"),
    ({"Vulnerabilities": {"MaxSeverity": "SEVERE", "Count": 1}, "RepoName": "a"}, [], "error"),
    ({"Vulnerabilities": {"MaxSeverity": None}, "RepoName": "a"}, [], "error"),
    ({"Vulnerabilities": None, "RepoName": "a"}, [], "error"),
    ({"Vulnerabilities": None, "RepoName": None, "Digest": None}, [], "error"),
    (None, ["can't find image: a:b"], "error"),
    (None, ["no reference provided"], "error"),
    ({"Vulnerabilities": {"MaxSeverity": "", "Count": 0}, "RepoName": "a"},
     ["unable to run vulnerability scan on tag v1 in repo a: error: cve-db is not present"], "not_scanned"),
    ({"Vulnerabilities": {"MaxSeverity": "", "Count": 0}, "RepoName": "a"},
     ["unable to run vulnerability scan on tag v1 in repo a: error: image 'a@sha256:00' scanning is not "
      "supported for given media type: layer media type 'application/java-archive'"], "not_scannable"),
    ({"Vulnerabilities": {"MaxSeverity": "", "Count": 0}, "RepoName": "a"},
     ["unable to run vulnerability scan on tag v1 in repo a: error: cve search is disabled"], "unavailable"),
])
def test_max_severity_table(image: dict | None, messages: list[str], state: str) -> None:
    """zot-api.md's table, and `""` never meaning clean."""
    assert scan_state_of(image, messages)[0] == ScanState(state)
