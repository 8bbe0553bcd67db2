"""Value types shared by every layer: parsed once, passed around, never re-parsed from strings."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any

# --- digests -------------------------------------------------------------------------------------

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class InvalidDigest(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Digest:
    """A sha256 content digest. Only sha256 is accepted: it is all OCI registries use for blobs."""

    hex: str
    algorithm: str = "sha256"

    def __post_init__(self) -> None:
        if self.algorithm != "sha256":
            raise InvalidDigest(f"unsupported digest algorithm {self.algorithm!r}")
        if not _HEX64.match(self.hex):
            raise InvalidDigest(f"not a lowercase sha256 hex digest: {self.hex[:80]!r}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        if not isinstance(text, str) or ":" not in text:
            raise InvalidDigest(f"not a digest (expected 'sha256:<hex>'): {str(text)[:80]!r}")
        algorithm, _, hexpart = text.partition(":")
        return cls(hex=hexpart, algorithm=algorithm)

    @classmethod
    def from_hex(cls, hexpart: str) -> Digest:
        """Accepts a bare hex digest, as platforms usually store it (any case)."""
        text = hexpart.strip().lower()
        text = text.removeprefix("sha256:")
        return cls(hex=text)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


# --- OCI names -------------------------------------------------------------------------------------

# From the OCI distribution spec.
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class OciReference:
    repository: str
    tag: str

    def __post_init__(self) -> None:
        if len(self.repository) > 255 or not REPOSITORY_RE.match(self.repository):
            raise InvalidReference(f"repository name {self.repository[:100]!r} is not a valid OCI name")
        if not TAG_RE.match(self.tag):
            raise InvalidReference(f"tag {self.tag[:140]!r} is not a valid OCI tag")

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True, slots=True)
class ArtifactCoordinates:
    """One version of one application of one tenant: the unit of verification."""

    tenant: str
    app: str
    version: str

    def fields(self) -> dict[str, str]:
        return {"tenant": self.tenant, "app": self.app, "version": self.version}

    def oci_reference(
        self, repository_template: str = "{tenant}/{app}", tag_template: str = "v{version}"
    ) -> OciReference:
        try:
            return OciReference(
                repository=repository_template.format(**self.fields()),
                tag=tag_template.format(**self.fields()),
            )
        except (KeyError, IndexError, ValueError) as exc:
            if isinstance(exc, InvalidReference):
                raise
            raise InvalidReference(f"cannot build a reference: {exc}") from None

    def __str__(self) -> str:
        return f"{self.tenant}/{self.app}@{self.version}"


@dataclass(frozen=True, slots=True)
class InventoryItem:
    """A version as the platform knows it; sha256 and size, when given, are a third witness."""

    coordinates: ArtifactCoordinates
    path: str | None = None
    sha256: str | None = None
    size: int | None = None
    created_at: dt.datetime | None = None


# --- outcomes ----------------------------------------------------------------------------------------


class GateCondition(enum.StrEnum):
    """The named conditions of the cutover gate (metric label `condition`)."""

    LATEST_ALL_MATCH = "latest_all_match"
    NO_FAILURES_IN_WINDOW = "no_failures_in_window"
    WINDOW_OBSERVED = "window_observed"
    COVERAGE_COMPLETE = "coverage_complete"
    REGISTRY_ERROR_RATIO = "registry_error_ratio"
    REGISTRY_LATENCY_P99 = "registry_latency_p99"


class Outcome(enum.StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    MISSING_FILESYSTEM = "missing_filesystem"
    MISSING_OCI = "missing_oci"
    MISSING_BOTH = "missing_both"
    ERROR = "error"


class WrongSide(enum.StrEnum):
    FILESYSTEM = "filesystem"
    OCI = "oci"
    BOTH = "both"
    UNKNOWN = "unknown"


class Fault(enum.StrEnum):
    """What was observed. Stable snake_case codes: they are metric label values and report fields."""

    # bytes disagree
    STORES_DIFFER = "stores_differ"
    INVENTORY_DIGEST_MISMATCH = "inventory_digest_mismatch"
    INVENTORY_SIZE_MISMATCH = "inventory_size_mismatch"
    OCI_BLOB_DIGEST_MISMATCH = "oci_blob_digest_mismatch"
    OCI_BLOB_SIZE_MISMATCH = "oci_blob_size_mismatch"
    OCI_MANIFEST_DIGEST_MISMATCH = "oci_manifest_digest_mismatch"
    FILESYSTEM_JAR_CORRUPT = "filesystem_jar_corrupt"
    OCI_JAR_CORRUPT = "oci_jar_corrupt"
    # not there
    FILESYSTEM_MISSING = "filesystem_missing"
    OCI_MANIFEST_UNKNOWN = "oci_manifest_unknown"
    OCI_NAME_UNKNOWN = "oci_name_unknown"
    OCI_BLOB_UNKNOWN = "oci_blob_unknown"
    # the manifest does not say which bytes are the JAR
    OCI_NO_JAR_LAYER = "oci_no_jar_layer"
    OCI_AMBIGUOUS_LAYERS = "oci_ambiguous_layers"
    OCI_UNSUPPORTED_MEDIA_TYPE = "oci_unsupported_media_type"
    OCI_MANIFEST_INVALID = "oci_manifest_invalid"
    OCI_MANIFEST_TOO_LARGE = "oci_manifest_too_large"
    # could not read
    OCI_UNAUTHORIZED = "oci_unauthorized"
    OCI_FORBIDDEN = "oci_forbidden"
    OCI_RATE_LIMITED = "oci_rate_limited"
    OCI_SERVER_ERROR = "oci_server_error"
    OCI_TIMEOUT = "oci_timeout"
    OCI_UNREACHABLE = "oci_unreachable"
    OCI_PROTOCOL_ERROR = "oci_protocol_error"
    FILESYSTEM_UNREADABLE = "filesystem_unreadable"
    FILESYSTEM_TIMEOUT = "filesystem_timeout"
    # the row itself
    UNSAFE_PATH = "unsafe_path"
    INVALID_REFERENCE = "invalid_reference"
    INVALID_INVENTORY_DIGEST = "invalid_inventory_digest"
    INTERNAL_ERROR = "internal_error"


# --- evidence and results ----------------------------------------------------------------------------


class ReadErrorReason(enum.StrEnum):
    """Why a store could not be read (metric label `reason`); "not there" is not an error."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    PROTOCOL_ERROR = "protocol_error"
    UNREADABLE = "unreadable"
    INTEGRITY = "integrity"  # bytes did not match their own descriptor


@dataclass(slots=True)
class ReadStats:
    """How one store's read went, for metrics; not part of the report."""

    attempted: bool = False
    seconds: float = 0.0
    bytes: int = 0
    error: ReadErrorReason | None = None


@dataclass(slots=True)
class FilesystemEvidence:
    path: str | None = None  # relative to filesystem.root
    size: int | None = None
    sha256: str | None = None
    read: ReadStats = field(default_factory=lambda: ReadStats())

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(slots=True)
class OciEvidence:
    reference: str | None = None
    manifest_digest: str | None = None
    layer_digest: str | None = None
    layer_size: int | None = None
    size: int | None = None  # of the JAR (the tar member for a tar layer)
    sha256: str | None = None
    layer_media_type: str | None = None
    member: str | None = None  # the JAR's name inside a tar layer
    read: ReadStats = field(default_factory=lambda: ReadStats())

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "manifest_digest": self.manifest_digest,
            "layer_digest": self.layer_digest,
            "layer_size": self.layer_size,
            "size": self.size,
            "sha256": self.sha256,
        }


@dataclass(slots=True)
class CheckResult:
    coordinates: ArtifactCoordinates
    outcome: Outcome
    faults: list[Fault] = field(default_factory=list)
    wrong_side: WrongSide | None = None
    filesystem: FilesystemEvidence = field(default_factory=FilesystemEvidence)
    oci: OciEvidence = field(default_factory=OciEvidence)
    detail: str | None = None
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    duration_seconds: float = 0.0
    created_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report's result object (DESIGN.md contract): every key always present."""
        return {
            **self.coordinates.fields(),
            "outcome": self.outcome.value,
            "wrong_side": self.wrong_side.value if self.wrong_side else None,
            "faults": [f.value for f in self.faults],
            "filesystem": self.filesystem.as_dict(),
            "oci": self.oci.as_dict(),
            "detail": self.detail,
        }
