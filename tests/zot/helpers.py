"""Helpers for the Zot tests: a tenant of the test's own, pushes, and gauges read as a user reads them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.jars import jar_bytes
from tests.support.registry import Layer, RegistryServer, tar_wrapped
from verifier.metrics import SCAN_STATES, SEVERITIES, SIGNATURE_STATUSES, Metrics
from verifier.model import ArtifactCoordinates, InventoryItem
from verifier.stores.oci import Credentials

JAR = "application/java-archive"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def credentials(server: RegistryServer) -> Credentials:
    return Credentials(server.username, server.password)


@dataclass
class Apps:
    """A tenant of the test's own, and ways to push its versions as the platform would."""

    registry: RegistryServer
    tenant: str
    workdir: Path
    _requests: requests.Session | None = None

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
        return self.push_layers(self.repository(app), f"v{version}", [layer])

    def push_layers(self, repository: str, tag: str, layers: list[Layer]) -> str:
        """Like RegistryServer.push_manifest, over one kept-alive connection, skipping blobs it has."""
        session = self._session()
        config = Layer(b"{}", "application/vnd.unknown.config.v1+json")
        for blob in (config, *layers):
            url = f"{self.registry.url}/v2/{repository}/blobs"
            if session.head(f"{url}/{blob.digest}", timeout=30).status_code == 200:
                continue
            start = session.post(f"{url}/uploads/", timeout=30)
            start.raise_for_status()
            session.put(start.headers["Location"], params={"digest": blob.digest}, data=blob.data, timeout=30,
                        headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config.media_type, "digest": config.digest, "size": len(config.data)},
            "layers": [{"mediaType": la.media_type, "digest": la.digest, "size": len(la.data),
                        **({"annotations": la.annotations} if la.annotations else {})} for la in layers],
        }).encode()
        session.put(f"{self.registry.url}/v2/{repository}/manifests/{tag}", data=manifest, timeout=30,
                    headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
        return "sha256:" + hashlib.sha256(manifest).hexdigest()

    def _session(self) -> requests.Session:
        if self._requests is None:
            self._requests = requests.Session()
            self._requests.trust_env = False
            self._requests.auth = (self.registry.username, self.registry.password)
        return self._requests

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


def only_scan(state: str, n: float = 1.0) -> dict[str, float]:
    """A ``scan_versions`` reading with ``n`` in one state and 0 in every other."""
    return {s: (n if s == state else 0.0) for s in SCAN_STATES}


def only_signature(status: str, n: float = 1.0) -> dict[str, float]:
    """A ``signature_versions`` reading with ``n`` in one status and 0 in every other."""
    return {s: (n if s == status else 0.0) for s in SIGNATURE_STATUSES}
