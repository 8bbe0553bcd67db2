"""Helpers for the Zot tests: a tenant of the test's own, pushes, and gauges read as a user reads them."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from tests.support.jars import jar_bytes
from tests.support.registry import Layer, RegistryServer, tar_wrapped
from verifier.metrics import SCAN_STATES, SEVERITIES, SIGNATURE_STATUSES, Metrics
from verifier.model import ArtifactCoordinates, InventoryItem

JAR = "application/java-archive"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Apps:
    """A tenant of the test's own, and ways to push its versions as the platform would."""

    registry: RegistryServer
    tenant: str
    workdir: Path

    def coordinates(self, app: str, version: str) -> ArtifactCoordinates:
        return ArtifactCoordinates(self.tenant, app, version)

    def item(self, app: str, version: str, created_at: dt.datetime | None = None) -> InventoryItem:
        return InventoryItem(self.coordinates(app, version), created_at=created_at)

    def repository(self, app: str) -> str:
        return f"{self.tenant}/{app}"

    def reference(self, app: str, version: str) -> str:
        return f"{self.repository(app)}:v{version}"

    def push(self, app: str, version: str, *, scannable: bool = True, seed: int = 0) -> str:
        """Push a JAR: inside a tar+gzip layer (scannable by Zot) or as a raw application/java-archive
        layer (not scannable). Returns the manifest digest."""
        jar = jar_bytes(3_000, seed=seed or int(hashlib.sha256(f"{app}{version}".encode()).hexdigest()[:6], 16))
        if scannable:
            layer = Layer(tar_wrapped(jar), TAR_GZIP)
        else:
            layer = Layer(jar, JAR, {"org.opencontainers.image.title": "app.jar"})
        return self.registry.push_manifest(self.repository(app), f"v{version}", [layer])

    def push_with_oras(self, app: str, version: str) -> None:
        path = self.workdir / f"{app}-{version}.jar"
        path.write_bytes(jar_bytes(3_000, seed=7))
        self.registry.push_jar_with_oras(self.repository(app), f"v{version}", path)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(f"artifact_parity_{name}", labels)


def scan_gauge(metrics: Metrics) -> dict[str, float]:
    """The whole ``scan_versions`` gauge, as a user reads it on a dashboard."""
    return {s: sample(metrics, "scan_versions", max_severity=s) or 0.0 for s in SCAN_STATES}


def signature_gauge(metrics: Metrics) -> dict[str, float]:
    return {s: sample(metrics, "signature_versions", status=s) or 0.0 for s in SIGNATURE_STATUSES}


def vulnerability_gauge(metrics: Metrics) -> dict[str, float]:
    return {s: sample(metrics, "vulnerabilities", severity=s) or 0.0 for s in SEVERITIES}


def only(state: str, n: float = 1.0, *, keys: tuple[str, ...] | None = None) -> dict[str, float]:
    """A gauge reading with ``n`` in one label and 0 elsewhere."""
    labels = keys or (SCAN_STATES if state in SCAN_STATES else SIGNATURE_STATUSES)
    return {s: (n if s == state else 0.0) for s in labels}
