"""Zot extensions: registry flavour, vulnerability-scan and signature status, independent cosign check.

Everything here reads through :class:`~verifier.stores.oci.RegistryTransport`, so credentials, timeouts
and the request budget apply, and nothing here sees aiohttp exceptions (only typed ``StoreError``).

Layers, from the bottom:

- pure parsing: :func:`image_query`, :func:`plan_batches`, :func:`scan_state_of`,
  :func:`signature_status_of`, :func:`newest_versions` (no I/O, table-tested);
- :func:`detect_flavour` (``/v2/_oci/ext/discover`` and ``/v2/_zot/ext/mgmt``; never raises);
- :class:`SearchClient`: many versions per GraphQL ``Image`` request, by alias, over GET;
- :class:`CosignVerifier`: the legacy ``sha256-<hex>.sig`` scheme, verified with our own key;
- :class:`ZotMonitor`: one refresh over the inventory → :class:`SupplyChainSnapshot` → metrics.

What a refresh does when the registry does not answer (decided here):
a version whose search batch or cosign check failed keeps the status of its last answered refresh,
marked ``stale`` (a version never answered is ``error``, its signature ``unavailable``); the snapshot is
``complete=False`` and ``scan_refresh_timestamp`` is not advanced, so the stale-data alert speaks for a
long outage while a short blip does not flap the per-version figures. A per-image answer of Zot
(``can't find image``, a forbidden all-null object, a scanner error) is an answer, never carried over.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import ConfigError, RegistryNotFound, StoreError
from .metrics import SCAN_STATES, SEVERITIES, SIGNATURE_STATUSES, Metrics
from .model import ArtifactCoordinates, Digest, Fault, InvalidReference, InventoryItem, OciReference
from .stores.oci import MANIFEST_ACCEPT, MANIFEST_LIMIT, Descriptor, RegistryTransport, read_capped

log = logging.getLogger("verifier.zot")

DISCOVER_PATH = "/v2/_oci/ext/discover"
MGMT_PATH = "/v2/_zot/ext/mgmt"
SEARCH_PATH = "/v2/_zot/ext/search"
ZOT_EXTENSION = "_zot"

JSON_LIMIT = 1 << 20
SEARCH_BODY_LIMIT = 16 << 20
COSIGN_BLOB_LIMIT = 1 << 20
DEFAULT_BATCH_SIZE = 50
# Zot (Go net/http) takes 1 MiB of request line and headers, but an ingress in front of it rarely does:
# nginx refuses a request line over 8 KiB with 414. A batch is cut so that its URL stays below this.
DEFAULT_MAX_URL_LENGTH = 8000

COSIGN_SIGNATURE_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_PAYLOAD_TYPE = "cosign container image signature"

# Substrings of Zot's vulnerability-summary errors (zot-api.md, "Scannability").
NOT_SCANNABLE_TEXT = "scanning is not supported for given"
DB_MISSING_TEXT = "cve-db is not present"
CVE_DISABLED_TEXT = "cve search is disabled"
VULN_ERROR_PREFIX = "unable to run vulnerability scan"

SCANNABLE_LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)


class ScanState(enum.StrEnum):
    """Label values of ``artifact_parity_scan_versions{max_severity}`` (metrics.SCAN_STATES)."""

    NONE = "none"
    UNKNOWN = "unknown"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    NOT_SCANNED = "not_scanned"
    NOT_SCANNABLE = "not_scannable"
    ERROR = "error"
    UNAVAILABLE = "unavailable"

    @property
    def scanned(self) -> bool:
        return self in _SCANNED


_SCANNED = frozenset({ScanState.NONE, ScanState.UNKNOWN, ScanState.LOW, ScanState.MEDIUM, ScanState.HIGH,
                      ScanState.CRITICAL})
_MAX_SEVERITY = {"NONE": ScanState.NONE, "UNKNOWN": ScanState.UNKNOWN, "LOW": ScanState.LOW,
                 "MEDIUM": ScanState.MEDIUM, "HIGH": ScanState.HIGH, "CRITICAL": ScanState.CRITICAL}
_COUNT_FIELDS = {"unknown": "UnknownCount", "low": "LowCount", "medium": "MediumCount", "high": "HighCount",
                 "critical": "CriticalCount"}


class SignatureStatus(enum.StrEnum):
    """Label values of ``artifact_parity_signature_versions{status}`` (metrics.SIGNATURE_STATUSES)."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"
    UNSIGNED = "unsigned"
    UNAVAILABLE = "unavailable"


assert tuple(s.value for s in ScanState) == SCAN_STATES
assert tuple(s.value for s in SignatureStatus) == SIGNATURE_STATUSES
assert tuple(_COUNT_FIELDS) == SEVERITIES


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ValueError past ``limit``."""
    body = await read_capped(response, limit + 1)
    if len(body) > limit:
        raise ValueError(f"response larger than {limit} bytes")
    return body


async def _get_bytes(transport: RegistryTransport, path: str, *, limit: int, accept: str,
                     not_found: Fault | None = None, params: Mapping[str, str] | None = None) -> bytes:
    try:
        async with transport.get(path, headers={"Accept": accept}, params=params, not_found=not_found) as response:
            return await _read_capped(response, limit)
    except (TimeoutError, aiohttp.ClientError) as exc:  # the body broke after the status line
        raise StoreError(f"reading {path} failed: {type(exc).__name__}", fault=Fault.OCI_PROTOCOL_ERROR) from None


async def _get_json(transport: RegistryTransport, path: str, *, not_found: Fault | None = None,
                    params: Mapping[str, str] | None = None, limit: int = JSON_LIMIT) -> dict[str, Any]:
    body = await _get_bytes(transport, path, limit=limit, accept="application/json", not_found=not_found,
                            params=params)
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError(f"{path} did not answer a JSON object")
    return doc


# --- flavour ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryFlavour:
    """What the registry is and which of Zot's extensions it offers."""

    name: str  # "zot" | "distribution" | "unknown" (could not tell: unreachable, refused, nonsense)
    release_tag: str | None = None
    commit: str | None = None
    binary_type: str | None = None
    dist_spec_version: str | None = None
    extensions: tuple[str, ...] = ()  # endpoints the discover document lists (enabled extensions)
    compiled: tuple[str, ...] = ()  # extensions compiled in, from mgmt's binaryType
    auth_methods: tuple[str, ...] = ()  # keys of mgmt's http.auth
    search_available: bool = False
    reason: str | None = None  # why scans or Zot's signature status are unavailable, for the status page

    @property
    def is_zot(self) -> bool:
        return self.name == "zot"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "release_tag": self.release_tag,
            "commit": self.commit,
            "binary_type": self.binary_type,
            "dist_spec_version": self.dist_spec_version,
            "extensions": list(self.extensions),
            "compiled": list(self.compiled),
            "auth_methods": list(self.auth_methods),
            "search_available": self.search_available,
            "reason": self.reason,
        }


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _zot_endpoints(discover: Mapping[str, Any]) -> tuple[str, ...]:
    extensions = discover.get("extensions")
    if not isinstance(extensions, list):
        raise ValueError("the discover document has no 'extensions' list")
    endpoints: list[str] = []
    for ext in extensions:
        if isinstance(ext, dict) and ext.get("name") == ZOT_EXTENSION and isinstance(ext.get("endpoints"), list):
            endpoints.extend(str(e) for e in ext["endpoints"])
    return tuple(endpoints)


async def detect_flavour(transport: RegistryTransport) -> RegistryFlavour:
    """Zot or a plain distribution registry, and which extensions are on. Never raises."""
    try:
        discover: dict[str, Any] | None = await _get_json(transport, DISCOVER_PATH, not_found=Fault.OCI_NAME_UNKNOWN)
        endpoints = _zot_endpoints(discover) if discover is not None else ()
    except RegistryNotFound:
        discover, endpoints = None, ()
    except (StoreError, ValueError) as exc:
        return RegistryFlavour("unknown", reason=f"could not tell which registry this is ({DISCOVER_PATH}: {exc})")

    mgmt: dict[str, Any] | None = None
    mgmt_problem: str | None = None
    if discover is None or MGMT_PATH in endpoints:
        try:
            mgmt = await _get_json(transport, MGMT_PATH, not_found=Fault.OCI_NAME_UNKNOWN)
        except RegistryNotFound:
            mgmt = None
        except (StoreError, ValueError) as exc:
            mgmt_problem = f"{MGMT_PATH}: {exc}"

    if discover is None and mgmt is None:
        if mgmt_problem is not None:
            return RegistryFlavour("unknown", reason=f"could not tell which registry this is ({mgmt_problem})")
        return RegistryFlavour(
            "distribution",
            reason="the registry is a plain OCI distribution registry (no Zot extensions: "
                   f"{DISCOVER_PATH} answered 404), so it offers no vulnerability scans and no signature "
                   "verification",
        )

    info = mgmt or {}
    binary_type = _str_or_none(info.get("binaryType"))
    compiled = tuple(part for part in (binary_type or "").split("-") if part)
    http = info.get("http")
    auth: Any = http.get("auth") if isinstance(http, dict) else None
    if not isinstance(auth, dict):
        auth = {}
    # mgmt is served only when search is enabled (zot-api.md), which covers a Zot without discover
    search = SEARCH_PATH in endpoints or (discover is None and mgmt is not None)
    release = _str_or_none(info.get("releaseTag"))
    reason = None
    if not search:
        listed = ", ".join(endpoints) if endpoints else "none"
        reason = (f"Zot {release or '(release unknown)'} has its search extension disabled (enabled extensions: "
                  f"{listed}), so vulnerability scans and Zot's signature verification are unavailable; "
                  "enable extensions.search (with cve) in Zot's configuration")
    return RegistryFlavour(
        "zot",
        release_tag=release,
        commit=_str_or_none(info.get("commit")),
        binary_type=binary_type,
        dist_spec_version=_str_or_none(info.get("distSpecVersion")),
        extensions=endpoints,
        compiled=compiled,
        auth_methods=tuple(sorted(str(k) for k in auth)),
        search_available=search,
        reason=reason,
    )


# --- the search API ----------------------------------------------------------------------------------------

IMAGE_FIELDS = ("RepoName Tag Digest IsSigned SignatureInfo{Tool IsTrusted Author} "
                "Vulnerabilities{MaxSeverity Count UnknownCount LowCount MediumCount HighCount CriticalCount}")


def image_query(references: Sequence[str]) -> str:
    """One GraphQL document asking ``Image`` for every reference, aliased ``v0``, ``v1``, …"""
    parts = (f"v{i}:Image(image:{json.dumps(ref)}){{{IMAGE_FIELDS}}}" for i, ref in enumerate(references))
    return "{" + " ".join(parts) + "}"


def search_url_length(base_url: str, references: Sequence[str]) -> int:
    """A conservative length of the GET URL for these references (every reserved character escaped)."""
    return len(base_url) + len(SEARCH_PATH) + len("?query=") + len(quote(image_query(references), safe=""))


def plan_batches(references: Sequence[str], *, batch_size: int, max_url_length: int, base_url: str = ""
                 ) -> list[list[str]]:
    """Greedy batches of at most ``batch_size`` whose GET URL stays within ``max_url_length``.

    A single reference always makes a batch (a tag and repository name are bounded, so it fits any sane
    limit); the per-alias cost is computed, not guessed.
    """
    batches: list[list[str]] = []
    current: list[str] = []
    fixed = len(base_url) + len(SEARCH_PATH) + len("?query=") + len(quote("{}", safe=""))
    used = fixed
    for ref in references:
        cost = len(quote(f"v{len(current)}:Image(image:{json.dumps(ref)}){{{IMAGE_FIELDS}}} ", safe=""))
        if current and (len(current) >= batch_size or used + cost > max_url_length):
            batches.append(current)
            current, used = [], fixed
            cost = len(quote(f"v0:Image(image:{json.dumps(ref)}){{{IMAGE_FIELDS}}} ", safe=""))
        current.append(ref)
        used += cost
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True, slots=True)
class ImageAnswer:
    """Zot's answer for one ``repo:tag``: the ImageSummary object (None after a resolver error) and the
    messages of the errors whose ``path[0]`` named its alias."""

    image: Mapping[str, Any] | None
    messages: tuple[str, ...] = ()


class SearchError(Exception):
    """The search API gave no usable answer for a batch."""


def _alias_index(path: Any, count: int) -> int | None:
    if not isinstance(path, list) or not path or not isinstance(path[0], str):
        return None
    alias = path[0]
    if not alias.startswith("v") or not alias[1:].isdigit():
        return None
    index = int(alias[1:])
    return index if index < count else None


def _is_vulnerability_error(message: str) -> bool:
    return message.startswith(VULN_ERROR_PREFIX)


class SearchClient:
    """``Image`` queries, many references per request, over GET (a POST needs a push-scoped token)."""

    def __init__(self, transport: RegistryTransport, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_url_length: int = DEFAULT_MAX_URL_LENGTH) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.transport = transport
        self.batch_size = batch_size
        self.max_url_length = max_url_length
        self.requests = 0  # search requests sent, for the status page and tests

    async def images(self, references: Iterable[str]) -> tuple[dict[str, ImageAnswer], dict[str, str]]:
        """Answers by reference, and for references whose batch got no answer the reason why."""
        refs = list(dict.fromkeys(references))
        answers: dict[str, ImageAnswer] = {}
        failures: dict[str, str] = {}
        for batch in plan_batches(refs, batch_size=self.batch_size, max_url_length=self.max_url_length,
                                  base_url=self.transport.base_url):
            try:
                answers.update(await self._batch(batch))
            except (StoreError, SearchError, ValueError) as exc:
                log.warning("search request for %d versions failed: %s", len(batch), exc)
                for ref in batch:
                    failures[ref] = str(exc)
        return answers, failures

    async def _query(self, query: str) -> dict[str, Any]:
        self.requests += 1
        return await _get_json(self.transport, SEARCH_PATH, params={"query": query}, limit=SEARCH_BODY_LIMIT)

    async def _batch(self, references: Sequence[str]) -> dict[str, ImageAnswer]:
        """One request; when a resolver error nulled ``data``, the failed aliases are answered with their
        errors and the others asked again (Zot's ``Image`` is non-null, so one unknown tag voids the batch)."""
        remaining = list(references)
        result: dict[str, ImageAnswer] = {}
        while remaining:
            doc = await self._query(image_query(remaining))
            data = doc.get("data")
            raw_errors = doc.get("errors")
            errors: list[Any] = raw_errors if isinstance(raw_errors, list) else []
            by_alias: dict[int, list[str]] = {}
            unattributed: list[str] = []
            for error in errors:
                message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
                index = _alias_index(error.get("path") if isinstance(error, dict) else None, len(remaining))
                if index is None:
                    unattributed.append(message)
                else:
                    by_alias.setdefault(index, []).append(message)
            if isinstance(data, dict):
                for i, ref in enumerate(remaining):
                    image = data.get(f"v{i}")
                    messages = by_alias.get(i, [])
                    if image is None and not messages:
                        messages = unattributed or ["the search API returned no object for this image"]
                    result[ref] = ImageAnswer(image if isinstance(image, dict) else None, tuple(messages))
                return result
            failed = {i for i, messages in by_alias.items()
                      if any(not _is_vulnerability_error(m) for m in messages)}
            if not failed:
                said = "; ".join(unattributed + [m for ms in by_alias.values() for m in ms])[:300]
                raise SearchError(f"the search API answered without data: {said or 'no error given'}")
            for i in sorted(failed):
                result[remaining[i]] = ImageAnswer(None, tuple(by_alias[i]))
            remaining = [ref for i, ref in enumerate(remaining) if i not in failed]
        return result


# --- mapping an answer to states ------------------------------------------------------------------------


def _all_null(image: Mapping[str, Any]) -> bool:
    return all(value is None for value in image.values())


def scan_state_of(image: Mapping[str, Any] | None, messages: Sequence[str] = ()
                  ) -> tuple[ScanState, dict[str, int], str | None]:
    """(state, counts by severity when scanned, detail) for one ``Image`` answer (DESIGN.md decisions)."""
    for message in messages:
        if CVE_DISABLED_TEXT in message:
            return ScanState.UNAVAILABLE, {}, message
    for message in messages:
        if NOT_SCANNABLE_TEXT in message:
            return ScanState.NOT_SCANNABLE, {}, message
    for message in messages:
        if DB_MISSING_TEXT in message:
            return ScanState.NOT_SCANNED, {}, message
    if messages:
        return ScanState.ERROR, {}, messages[0]
    if image is None:
        return ScanState.ERROR, {}, "the search API returned no object for this image"
    if _all_null(image):
        return ScanState.ERROR, {}, ("not found or forbidden: the search API returned an empty object "
                                    "(the configured credentials may not read this repository)")
    vulnerabilities = image.get("Vulnerabilities")
    if not isinstance(vulnerabilities, dict):
        return ScanState.ERROR, {}, "the search API returned no vulnerability summary"
    max_severity = vulnerabilities.get("MaxSeverity")
    if max_severity == "":
        return ScanState.NOT_SCANNED, {}, None
    state = _MAX_SEVERITY.get(max_severity.upper()) if isinstance(max_severity, str) else None
    if state is None:
        return ScanState.ERROR, {}, f"unrecognised MaxSeverity {max_severity!r}"
    counts = {}
    for severity, key in _COUNT_FIELDS.items():
        value = vulnerabilities.get(key)
        counts[severity] = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
    return state, counts, None


def signature_status_of(image: Mapping[str, Any] | None) -> SignatureStatus:
    """Trusted when any signature is trusted; signed but none trusted → untrusted; IsSigned false → unsigned."""
    if image is None or _all_null(image):
        return SignatureStatus.UNAVAILABLE
    infos = [info for info in image.get("SignatureInfo") or [] if isinstance(info, dict)]
    if any(info.get("IsTrusted") is True for info in infos):
        return SignatureStatus.TRUSTED
    signed = image.get("IsSigned")
    if signed is True or infos:
        return SignatureStatus.UNTRUSTED
    if signed is False:
        return SignatureStatus.UNSIGNED
    return SignatureStatus.UNAVAILABLE


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


def newest_versions(items: Sequence[InventoryItem],
                    first_seen: Mapping[ArtifactCoordinates, dt.datetime] | None = None
                    ) -> dict[tuple[str, str], ArtifactCoordinates]:
    """The newest version of each (tenant, app): greatest ``created_at``, else the latest first seen.

    Each version is dated by its ``created_at`` when the inventory gives one, else by when the sidecar
    first saw it; a version with neither ranks oldest, and ties go to the later inventory row.
    """
    seen = first_seen or {}
    best: dict[tuple[str, str], tuple[dt.datetime, int, ArtifactCoordinates]] = {}
    for index, item in enumerate(items):
        c = item.coordinates
        when = item.created_at or seen.get(c)
        key = (_aware(when) if when is not None else _EPOCH, index, c)
        app = (c.tenant, c.app)
        if app not in best or key[:2] >= best[app][:2]:
            best[app] = key
    return {app: value[2] for app, value in best.items()}


# --- cosign ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CosignResult:
    status: SignatureStatus
    detail: str | None = None
    manifest_digest: str | None = None  # our own hash of the manifest the tag names


class CosignVerifier:
    """Verifies cosign key signatures (legacy ``.sig`` tag scheme) with a configured ECDSA public key."""

    def __init__(self, public_key_pem: bytes, *, source: str = "zot.cosign_public_key") -> None:
        try:
            key = serialization.load_pem_public_key(public_key_pem)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{source}: not a PEM public key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(f"{source}: cosign keys are ECDSA P-256, this is a {type(key).__name__}")
        self._key = key
        self.source = source
        self._cache: dict[tuple[str, str], CosignResult] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CosignVerifier:
        try:
            with open(path, "rb") as handle:
                pem = handle.read()
        except OSError as exc:
            raise ConfigError(f"zot.cosign_public_key: cannot read {os.fspath(path)}: {exc.strerror}") from None
        return cls(pem, source=f"zot.cosign_public_key ({os.fspath(path)})")

    def verify_layer(self, payload: bytes, signature_b64: str, manifest_digest: Digest) -> str | None:
        """None when this is a valid cosign signature of ``manifest_digest`` by our key, else the reason."""
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            return "the signature annotation is not base64"
        try:
            self._key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return "the signature does not verify with the configured key"
        try:
            critical = json.loads(payload)["critical"]
            named = critical["image"]["docker-manifest-digest"]
            kind = critical["type"]
        except (ValueError, KeyError, TypeError):
            return "the signed payload is not a cosign simple-signing document"
        if kind != COSIGN_PAYLOAD_TYPE:
            return f"the signed payload's type is {str(kind)[:80]!r}, not {COSIGN_PAYLOAD_TYPE!r}"
        if named != str(manifest_digest):
            return f"the signed payload names {str(named)[:80]}, not this manifest {manifest_digest}"
        return None

    async def check(self, transport: RegistryTransport, reference: OciReference) -> CosignResult:
        """Resolve the tag ourselves, fetch ``sha256-<hex>.sig``, verify every simple-signing layer.

        Raises StoreError when the registry cannot be read (the caller decides what that means).
        """
        repo = reference.repository
        try:
            manifest = await _get_bytes(transport, f"/v2/{repo}/manifests/{reference.tag}", limit=MANIFEST_LIMIT,
                                        accept=MANIFEST_ACCEPT, not_found=Fault.OCI_MANIFEST_UNKNOWN)
        except RegistryNotFound:
            return CosignResult(SignatureStatus.UNAVAILABLE, f"{reference} is not in the registry")
        except ValueError:
            return CosignResult(SignatureStatus.UNAVAILABLE, f"the manifest of {reference} is larger than 4 MiB")
        digest = Digest(hashlib.sha256(manifest).hexdigest())
        try:
            sig_manifest = await _get_bytes(transport, f"/v2/{repo}/manifests/sha256-{digest.hex}.sig",
                                            limit=MANIFEST_LIMIT, accept=MANIFEST_ACCEPT,
                                            not_found=Fault.OCI_MANIFEST_UNKNOWN)
        except RegistryNotFound:
            return CosignResult(SignatureStatus.UNSIGNED, None, str(digest))
        except ValueError:
            return CosignResult(SignatureStatus.UNTRUSTED, "the signature manifest is larger than 4 MiB", str(digest))
        cache_key = (str(digest), hashlib.sha256(sig_manifest).hexdigest())
        if cache_key in self._cache:
            return self._cache[cache_key]
        result = await self._verify_signatures(transport, repo, digest, sig_manifest)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[cache_key] = result
        return result

    async def _verify_signatures(self, transport: RegistryTransport, repo: str, digest: Digest,
                                 sig_manifest: bytes) -> CosignResult:
        try:
            layers = [Descriptor.parse(raw) for raw in json.loads(sig_manifest).get("layers") or []]
        except (ValueError, AttributeError, TypeError) as exc:
            return CosignResult(SignatureStatus.UNTRUSTED, f"the signature manifest is not valid: {exc}", str(digest))
        signature_layers = [layer for layer in layers if layer.media_type == COSIGN_SIGNATURE_LAYER]
        if not signature_layers:
            return CosignResult(SignatureStatus.UNTRUSTED, "the signature manifest has no simple-signing layer",
                                str(digest))
        reasons: list[str] = []
        for layer in signature_layers:
            annotation = layer.annotations.get(COSIGN_SIGNATURE_ANNOTATION)
            if not annotation:
                reasons.append(f"layer {layer.digest} has no {COSIGN_SIGNATURE_ANNOTATION} annotation")
                continue
            if layer.size > COSIGN_BLOB_LIMIT:
                reasons.append(f"payload {layer.digest} is larger than {COSIGN_BLOB_LIMIT} bytes")
                continue
            try:
                payload = await _get_bytes(transport, f"/v2/{repo}/blobs/{layer.digest}", limit=COSIGN_BLOB_LIMIT,
                                           accept="*/*", not_found=Fault.OCI_BLOB_UNKNOWN)
            except RegistryNotFound:
                reasons.append(f"payload blob {layer.digest} is missing")
                continue
            except ValueError:
                reasons.append(f"payload blob {layer.digest} is larger than {COSIGN_BLOB_LIMIT} bytes")
                continue
            actual = hashlib.sha256(payload).hexdigest()
            if actual != layer.digest.hex or len(payload) != layer.size:
                reasons.append(f"payload blob {layer.digest} served bytes hashing to sha256:{actual}")
                continue
            reason = self.verify_layer(payload, annotation, digest)
            if reason is None:
                return CosignResult(SignatureStatus.TRUSTED, None, str(digest))
            reasons.append(reason)
        return CosignResult(SignatureStatus.UNTRUSTED, "; ".join(reasons)[:500], str(digest))


# --- snapshot -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """Scan and signature status of one inventory version."""

    coordinates: ArtifactCoordinates
    reference: str | None
    scan: ScanState
    signature: SignatureStatus
    vulnerabilities: Mapping[str, int] = field(default_factory=dict)  # by severity, when scanned
    digest: str | None = None  # the manifest digest Zot reported
    zot_signature: SignatureStatus | None = None  # Zot's view (IsSigned/SignatureInfo), when it gave one
    cosign_signature: SignatureStatus | None = None  # the independent key check, when configured
    detail: str | None = None
    observed_at: dt.datetime | None = None  # when the registry last answered for this version
    stale: bool = False  # carried over: the registry did not answer in this refresh

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.coordinates.fields(),
            "reference": self.reference,
            "digest": self.digest,
            "scan": self.scan.value,
            "vulnerabilities": dict(self.vulnerabilities),
            "signature": self.signature.value,
            "zot_signature": self.zot_signature.value if self.zot_signature else None,
            "cosign_signature": self.cosign_signature.value if self.cosign_signature else None,
            "detail": self.detail,
            "observed_at": _iso(self.observed_at),
            "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class SupplyChainSnapshot:
    """One refresh: what /status.json shows and what :meth:`ZotMonitor.apply` turns into metrics."""

    flavour: RegistryFlavour
    refreshed_at: dt.datetime
    complete: bool  # every question got an answer; only then is scan_refresh_timestamp advanced
    versions: tuple[VersionStatus, ...]
    scan_versions: Mapping[str, int]  # every SCAN_STATES key
    signature_versions: Mapping[str, int]  # every SIGNATURE_STATUSES key
    vulnerabilities: Mapping[str, int]  # every SEVERITIES key: CVEs in the newest version of each app
    newest: tuple[ArtifactCoordinates, ...]
    notes: tuple[str, ...]
    signature_source: str  # "cosign" (configured key decides) | "zot" | "none"
    require_signatures: bool = False
    disagreements: int = 0  # versions where the cosign check and Zot's IsTrusted disagree
    search_requests: int = 0
    error: str | None = None
    last_complete_at: dt.datetime | None = None

    @property
    def not_trusted(self) -> tuple[ArtifactCoordinates, ...]:
        return tuple(v.coordinates for v in self.versions if v.signature is not SignatureStatus.TRUSTED)

    @property
    def signature_requirement_met(self) -> bool | None:
        """None when signatures are not required; else whether every version is signed by a trusted key."""
        if not self.require_signatures:
            return None
        return not self.not_trusted

    def as_dict(self, *, versions: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "flavour": self.flavour.as_dict(),
            "refreshed_at": _iso(self.refreshed_at),
            "last_complete_at": _iso(self.last_complete_at),
            "complete": self.complete,
            "error": self.error,
            "scan_versions": dict(self.scan_versions),
            "signature_versions": dict(self.signature_versions),
            "vulnerabilities": dict(self.vulnerabilities),
            "newest": [c.fields() for c in self.newest],
            "signature_source": self.signature_source,
            "require_signatures": self.require_signatures,
            "signature_requirement_met": self.signature_requirement_met,
            "disagreements": self.disagreements,
            "search_requests": self.search_requests,
            "notes": list(self.notes),
        }
        if versions:
            doc["versions"] = [v.as_dict() for v in self.versions]
        return doc


# --- the monitor -----------------------------------------------------------------------------------------


class ZotMonitor:
    """Reads scan and signature status for the inventory; the sidecar calls :meth:`refresh` on
    ``zot.scan_refresh`` and :meth:`apply` with the result (or :meth:`run_forever` does both)."""

    def __init__(
        self,
        transport: RegistryTransport,
        *,
        repository_template: str = "{tenant}/{app}",
        tag_template: str = "v{version}",
        batch_size: int = DEFAULT_BATCH_SIZE,
        cosign_public_key: str | os.PathLike[str] | None = None,
        require_signatures: bool = False,
        cosign_concurrency: int = 4,
        max_url_length: int = DEFAULT_MAX_URL_LENGTH,
    ) -> None:
        self.transport = transport
        self.repository_template = repository_template
        self.tag_template = tag_template
        self.require_signatures = require_signatures
        self.search = SearchClient(transport, batch_size=batch_size, max_url_length=max_url_length)
        self.cosign = CosignVerifier.from_file(cosign_public_key) if cosign_public_key is not None else None
        self._cosign_slots = asyncio.Semaphore(max(1, cosign_concurrency))
        self.flavour: RegistryFlavour | None = None
        self.snapshot: SupplyChainSnapshot | None = None
        self._previous: dict[ArtifactCoordinates, VersionStatus] = {}
        self._disagreeing: set[str] = set()
        self._last_complete: dt.datetime | None = None

    async def detect(self) -> RegistryFlavour:
        """Detect the flavour (again). When the registry cannot be reached, the last known flavour stays."""
        flavour = await detect_flavour(self.transport)
        if flavour.name == "unknown" and self.flavour is not None and self.flavour.name != "unknown":
            log.warning("registry flavour not re-detected, keeping %s: %s", self.flavour.name, flavour.reason)
            return self.flavour
        if self.flavour is None or flavour != self.flavour:
            log.info("registry flavour: %s %s%s", flavour.name, flavour.release_tag or "",
                     f" ({flavour.reason})" if flavour.reason else "")
        self.flavour = flavour
        return flavour

    async def refresh(self, items: Sequence[InventoryItem],
                      first_seen: Mapping[ArtifactCoordinates, dt.datetime] | None = None) -> SupplyChainSnapshot:
        """One pass over the inventory. Never raises: registry failures become states and notes."""
        started = _utcnow()
        try:
            snapshot = await self._refresh(items, first_seen or {}, started)
        except Exception as exc:  # a bug must not stop the sidecar; it is logged with its traceback
            log.exception("scan and signature refresh failed")
            snapshot = self._failed(items, first_seen or {}, started, f"internal error: {exc!r}")
        self.snapshot = snapshot
        return snapshot

    def apply(self, snapshot: SupplyChainSnapshot, metrics: Metrics) -> None:
        """The one place where a snapshot becomes metrics."""
        metrics.set_scan_states(snapshot.scan_versions)
        metrics.set_vulnerabilities(snapshot.vulnerabilities)
        metrics.set_signature_states(snapshot.signature_versions)
        metrics.signatures_required.set(1 if snapshot.require_signatures else 0)
        if snapshot.complete:
            metrics.scan_refresh_timestamp.set(snapshot.refreshed_at.timestamp())

    async def run_forever(
        self,
        inventory: Callable[[], Sequence[InventoryItem] | Awaitable[Sequence[InventoryItem]]],
        metrics: Metrics,
        interval_seconds: float,
        *,
        first_seen: Callable[[], Mapping[ArtifactCoordinates, dt.datetime]] | None = None,
    ) -> None:
        """Refresh and apply every ``interval_seconds`` until cancelled."""
        while True:
            try:
                items = inventory()
                if asyncio.iscoroutine(items) or isinstance(items, asyncio.Future):
                    items = await items
                seen = first_seen() if first_seen is not None else None
            except Exception:  # the inventory's own health is reported by its refresher
                log.exception("no inventory for the scan refresh")
            else:
                self.apply(await self.refresh(list(items), seen), metrics)  # type: ignore[arg-type]
            await asyncio.sleep(interval_seconds)

    # --- internals ---------------------------------------------------------------------------------

    def _references(self, items: Sequence[InventoryItem]
                    ) -> tuple[dict[ArtifactCoordinates, OciReference], dict[ArtifactCoordinates, str]]:
        refs: dict[ArtifactCoordinates, OciReference] = {}
        invalid: dict[ArtifactCoordinates, str] = {}
        for item in items:
            try:
                refs[item.coordinates] = item.coordinates.oci_reference(self.repository_template, self.tag_template)
            except InvalidReference as exc:
                invalid[item.coordinates] = f"invalid reference: {exc}"
        return refs, invalid

    async def _cosign_all(self, refs: Iterable[OciReference]) -> dict[str, CosignResult | StoreError]:
        assert self.cosign is not None
        verifier = self.cosign

        async def one(ref: OciReference) -> tuple[str, CosignResult | StoreError]:
            async with self._cosign_slots:
                try:
                    return str(ref), await verifier.check(self.transport, ref)
                except StoreError as exc:
                    return str(ref), exc

        unique = {str(r): r for r in refs}
        return dict(await asyncio.gather(*(one(r) for r in unique.values())))

    async def _refresh(self, items: Sequence[InventoryItem], first_seen: Mapping[ArtifactCoordinates, dt.datetime],
                       now: dt.datetime) -> SupplyChainSnapshot:
        items = list({item.coordinates: item for item in items}.values())
        flavour = await self.detect()
        refs, invalid = self._references(items)
        answers: dict[str, ImageAnswer] = {}
        failures: dict[str, str] = {}
        requests_before = self.search.requests
        if flavour.search_available:
            answers, failures = await self.search.images(str(r) for r in refs.values())
        cosign: dict[str, CosignResult | StoreError] = {}
        if self.cosign is not None:
            cosign = await self._cosign_all(refs.values())

        versions: list[VersionStatus] = []
        disagreeing: set[str] = set()
        for item in items:
            c = item.coordinates
            if c in invalid:
                versions.append(VersionStatus(c, None, ScanState.ERROR, SignatureStatus.UNAVAILABLE,
                                              detail=invalid[c], observed_at=now))
                continue
            ref = str(refs[c])
            prev = self._previous.get(c)
            if prev is not None and prev.reference != ref:
                prev = None
            status = self._zot_status(c, ref, flavour, answers, failures, prev, now)
            if self.cosign is not None:
                status = self._with_cosign(status, cosign[ref], prev, now)
                if self._disagree(status):
                    disagreeing.add(ref)
            versions.append(status)
        self._log_disagreements(disagreeing, versions)

        complete = (flavour.name != "unknown" and not failures
                    and not any(isinstance(r, StoreError) for r in cosign.values()))
        if complete:
            self._last_complete = now
        self._previous = {v.coordinates: v for v in versions}
        unanswered = set(failures) | {ref for ref, r in cosign.items() if isinstance(r, StoreError)}
        errors = sorted(set(failures.values()) | {str(r) for r in cosign.values() if isinstance(r, StoreError)})
        error = None
        if flavour.name == "unknown":
            error = flavour.reason
        elif errors:
            error = f"the registry did not answer for {len(unanswered)} versions: {errors[0]}"
        return self._snapshot(items, versions, flavour, now, complete, first_seen, error,
                              self.search.requests - requests_before, len(disagreeing))

    def _zot_status(self, c: ArtifactCoordinates, ref: str, flavour: RegistryFlavour,
                    answers: Mapping[str, ImageAnswer], failures: Mapping[str, str],
                    prev: VersionStatus | None, now: dt.datetime) -> VersionStatus:
        if flavour.name == "unknown" or ref in failures:
            reason = failures.get(ref) or flavour.reason or "the registry did not answer"
            if prev is not None:
                return dataclasses.replace(prev, stale=True, detail=f"the registry did not answer ({reason}); "
                                           f"showing the status read at {_iso(prev.observed_at)}")
            return VersionStatus(c, ref, ScanState.ERROR, SignatureStatus.UNAVAILABLE, detail=reason)
        if not flavour.search_available:
            return VersionStatus(c, ref, ScanState.UNAVAILABLE, SignatureStatus.UNAVAILABLE, observed_at=now)
        answer = answers[ref]
        scan, counts, detail = scan_state_of(answer.image, answer.messages)
        zot_signature = signature_status_of(answer.image)
        digest = answer.image.get("Digest") if answer.image is not None else None
        return VersionStatus(c, ref, scan, zot_signature, counts, digest if isinstance(digest, str) else None,
                             zot_signature if zot_signature is not SignatureStatus.UNAVAILABLE else None,
                             None, detail, now)

    def _with_cosign(self, status: VersionStatus, result: CosignResult | StoreError, prev: VersionStatus | None,
                     now: dt.datetime) -> VersionStatus:
        if isinstance(result, StoreError):
            kept = prev.cosign_signature if prev is not None else None
            detail = f"cosign check: the registry did not answer ({result})"
            return dataclasses.replace(status, signature=kept or SignatureStatus.UNAVAILABLE, cosign_signature=kept,
                                       stale=status.stale or kept is not None,
                                       detail="; ".join(d for d in (status.detail, detail) if d))
        details = [d for d in (status.detail, f"cosign: {result.detail}" if result.detail else None) if d]
        if status.digest and result.manifest_digest and status.digest != result.manifest_digest:
            details.append(f"Zot reports digest {status.digest} but the tag resolves to {result.manifest_digest}")
        return dataclasses.replace(status, signature=result.status, cosign_signature=result.status,
                                   detail="; ".join(details) or None)

    @staticmethod
    def _disagree(status: VersionStatus) -> bool:
        zot, own = status.zot_signature, status.cosign_signature
        if zot is None or own is None or SignatureStatus.UNAVAILABLE in (zot, own):
            return False
        return (zot is SignatureStatus.TRUSTED) != (own is SignatureStatus.TRUSTED)

    def _log_disagreements(self, disagreeing: set[str], versions: Sequence[VersionStatus]) -> None:
        by_ref = {v.reference: v for v in versions}
        for ref in sorted(disagreeing - self._disagreeing):
            v = by_ref[ref]
            log.warning(
                "signature of %s: the configured cosign key says %s, Zot's IsTrusted says %s (Zot re-evaluates "
                "trust every 2 hours and on signature push; it checks the signature, not the payload's digest)%s",
                ref, v.cosign_signature, v.zot_signature, f": {v.detail}" if v.detail else "")
        for ref in sorted(self._disagreeing - disagreeing):
            log.info("signature of %s: the cosign check and Zot agree again", ref)
        self._disagreeing = disagreeing

    def _failed(self, items: Sequence[InventoryItem], first_seen: Mapping[ArtifactCoordinates, dt.datetime],
                now: dt.datetime, error: str) -> SupplyChainSnapshot:
        items = list({item.coordinates: item for item in items}.values())
        versions = []
        for item in items:
            prev = self._previous.get(item.coordinates)
            if prev is not None:
                versions.append(dataclasses.replace(prev, stale=True))
            else:
                versions.append(VersionStatus(item.coordinates, None, ScanState.ERROR, SignatureStatus.UNAVAILABLE,
                                              detail=error))
        flavour = self.flavour or RegistryFlavour("unknown", reason=error)
        return self._snapshot(items, versions, flavour, now, False, first_seen, error, 0, 0)

    def _snapshot(self, items: Sequence[InventoryItem], versions: Sequence[VersionStatus], flavour: RegistryFlavour,
                  now: dt.datetime, complete: bool, first_seen: Mapping[ArtifactCoordinates, dt.datetime],
                  error: str | None, requests: int, disagreements: int) -> SupplyChainSnapshot:
        scan_counts = Counter(v.scan.value for v in versions)
        signature_counts = Counter(v.signature.value for v in versions)
        newest = newest_versions(items, first_seen)
        by_coordinates = {v.coordinates: v for v in versions}
        vulnerabilities = dict.fromkeys(SEVERITIES, 0)
        for c in newest.values():
            v = by_coordinates[c]
            if v.scan.scanned:
                for severity in SEVERITIES:
                    vulnerabilities[severity] += v.vulnerabilities.get(severity, 0)
        if self.cosign is not None:
            source = "cosign"
        elif flavour.search_available:
            source = "zot"
        else:
            source = "none"
        snapshot = SupplyChainSnapshot(
            flavour=flavour,
            refreshed_at=now,
            complete=complete,
            versions=tuple(versions),
            scan_versions={s: scan_counts.get(s, 0) for s in SCAN_STATES},
            signature_versions={s: signature_counts.get(s, 0) for s in SIGNATURE_STATUSES},
            vulnerabilities=vulnerabilities,
            newest=tuple(newest[app] for app in sorted(newest)),
            notes=(),
            signature_source=source,
            require_signatures=self.require_signatures,
            disagreements=disagreements,
            search_requests=requests,
            error=error,
            last_complete_at=self._last_complete,
        )
        return dataclasses.replace(snapshot, notes=tuple(self._notes(snapshot, by_coordinates)))

    def _notes(self, snapshot: SupplyChainSnapshot, by_coordinates: Mapping[ArtifactCoordinates, VersionStatus]
               ) -> list[str]:
        """Plain sentences for the status page: what is unavailable, and why; what a person can do."""
        notes: list[str] = []
        flavour, scans = snapshot.flavour, snapshot.scan_versions
        total = len(snapshot.versions)
        if snapshot.error:
            when = _iso(snapshot.last_complete_at) or "never"
            notes.append(f"The last refresh was incomplete: {snapshot.error}. Versions the registry did not answer "
                         f"for keep their last known status (marked stale); last complete refresh: {when}.")
        if flavour.reason and flavour.name != "unknown":
            notes.append(f"Vulnerability scans are unavailable: {flavour.reason}.")
        if flavour.search_available:
            notes.append(
                "Zot scans only tar layers (" + ", ".join(SCANNABLE_LAYER_TYPES) + "): a JAR pushed as a raw "
                "application/java-archive layer is reported as not_scannable; a JAR pushed inside a tar layer is "
                "scannable, and the verifier compares the JAR member inside it."
                + (f" {scans['not_scannable']} of {total} versions are not scannable." if scans["not_scannable"]
                   else ""))
        if scans["not_scanned"]:
            db_missing = any(v.scan is ScanState.NOT_SCANNED and v.detail and DB_MISSING_TEXT in v.detail
                             for v in snapshot.versions)
            reason = ("Zot has not downloaded its vulnerability database yet (cve-db is not present)" if db_missing
                      else "Zot scans in the background every 15 minutes and loses its scan cache on restart and "
                           "on every vulnerability-database update")
            notes.append(f"{scans['not_scanned']} of {total} versions are not scanned yet: {reason}. If no version "
                         "is ever scanned, check that Zot's CVE scanning (extensions.search.cve) is configured.")
        if flavour.search_available and scans["unavailable"]:
            notes.append(f"Zot's CVE scanning is disabled ({CVE_DISABLED_TEXT}): configure extensions.search.cve.")
        if scans["error"]:
            first = next((v for v in snapshot.versions if v.scan is ScanState.ERROR and v.detail), None)
            notes.append(f"The scan status of {scans['error']} versions could not be read"
                         + (f" (e.g. {first.reference}: {first.detail})" if first is not None else "") + ".")
        newest_unscanned = sum(1 for c in snapshot.newest if not by_coordinates[c].scan.scanned)
        if newest_unscanned and flavour.search_available:
            notes.append(f"The CVE counts cover the newest version of each app; {newest_unscanned} of "
                         f"{len(snapshot.newest)} newest versions have no scan result and count as zero.")
        if snapshot.signature_source == "cosign":
            notes.append("Signatures are decided by the independent check with the configured cosign public key"
                         + (f"; it disagrees with Zot's IsTrusted for {snapshot.disagreements} versions (see the log)"
                            if snapshot.disagreements else "") + ".")
        elif snapshot.signature_source == "none":
            notes.append("Signature status is unavailable: the registry does not verify signatures; set "
                         "zot.cosign_public_key to verify cosign signatures independently.")
        if snapshot.require_signatures and snapshot.not_trusted:
            notes.append(f"zot.require_signatures is set and {len(snapshot.not_trusted)} of {total} versions are "
                         "not signed by a trusted key.")
        return notes
