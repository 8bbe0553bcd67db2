"""The OCI store: resolve a tag, pick the JAR layer, stream and hash it; trust no digest we did not compute.

Two layers, like httpx: :class:`RegistryTransport` owns the one ``ClientSession``, credentials,
redirects, timeouts, concurrency and budgets and turns every aiohttp or HTTP failure into a typed
:class:`~verifier.errors.RegistryError`; :class:`OciStore` knows paths and media types. Nothing above
this module sees aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

from .. import __version__
from ..budget import RegistryBudget, track_throttle
from ..errors import IntegrityError, LayoutError, RegistryError, RegistryNotFound
from ..model import Digest, Fault, InvalidDigest, OciReference, ReadErrorReason
from .digest import CHUNK_SIZE, Sha256Sink, Sink, TarJarSink, TeeSink, pump

MANIFEST_LIMIT = 4 << 20
ERROR_BODY_LIMIT = 64 << 10
MAX_REDIRECTS = 5

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"

JAR_MEDIA_TYPE = "application/java-archive"
TITLE_ANNOTATION = "org.opencontainers.image.title"
RAW_JAR_TYPES = frozenset({JAR_MEDIA_TYPE, "application/x-java-archive", "application/zip",
                           "application/octet-stream"})
TAR_TYPES = frozenset({
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
})


def redact_url(url: str) -> str:
    """Scheme, host and path only: no userinfo, no query (pre-signed URLs carry credentials there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to ``limit`` bytes (``read(n)`` returns what is buffered, so loop until full or EOF)."""
    parts: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = await response.content.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


# --- transport -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(username={self.username!r}, password=***)"


class RegistryTransport:
    """One session per registry: auth, redirects, timeouts, bounded concurrency, budgets, typed errors."""

    def __init__(
        self,
        base_url: str,
        *,
        credentials: Credentials | None = None,
        ca_file: str | None = None,
        timeout_seconds: float = 30.0,
        concurrency: int = 4,
        budget: RegistryBudget | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.ca_file = ca_file
        self.timeout_seconds = timeout_seconds
        self.budget = budget or RegistryBudget()
        self._semaphore = asyncio.Semaphore(max(1, concurrency))
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._origin = _origin(self.base_url)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is not None:
            return
        ssl_context: ssl.SSLContext | bool = True
        if self.ca_file:
            ssl_context = ssl.create_default_context(cafile=self.ca_file)
        connector = aiohttp.TCPConnector(limit=max(4, self._concurrency * 2), ssl=ssl_context)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # no .netrc credentials, no proxies from the environment
            # identity: we hash the bytes the registry stores, never a transfer encoding of them
            headers={"User-Agent": f"parity-verifier/{__version__}", "Accept-Encoding": "identity"},
            auto_decompress=False,  # we hash the bytes the registry stores, not a transfer encoding
            read_bufsize=CHUNK_SIZE,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RegistryTransport used before open()")
        return self._session

    def url(self, path: str) -> str:
        return self.base_url + path

    def _auth_headers(self, url: str) -> dict[str, str]:
        if self.credentials is not None and _origin(url) == self._origin:
            return {"Authorization": self.credentials.basic_header()}
        return {}

    @asynccontextmanager
    async def get(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        streaming: bool = False,
        not_found: Fault | None = None,
        method: str = "GET",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request with redirects followed by hand, so credentials never leave the registry's origin.

        Yields a 2xx response; anything else raises. ``streaming`` keeps a per-read timeout instead of
        a total one, so large blobs are bounded by stalls, not by their size.
        """
        await self.budget.request()
        if streaming:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_seconds,
                                            sock_connect=self.timeout_seconds, sock_read=self.timeout_seconds)
        else:
            timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        url = self.url(path)
        async with self._semaphore:
            response: aiohttp.ClientResponse | None = None
            try:
                for _hop in range(MAX_REDIRECTS + 1):
                    request_headers = {**(headers or {}), **self._auth_headers(url)}
                    response = await self.session.request(
                        method, url, headers=request_headers, params=params if url.startswith(self.base_url)
                        else None, allow_redirects=False, timeout=timeout,
                    )
                    if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                        url = urljoin(str(response.url), response.headers["Location"])
                        response.release()
                        response = None
                        params = None
                        continue
                    break
                else:
                    raise RegistryError(f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}",
                                        fault=Fault.OCI_PROTOCOL_ERROR, reason=ReadErrorReason.PROTOCOL_ERROR,
                                        url=redact_url(url))
                assert response is not None
                if response.status >= 300:
                    await self._raise_for_status(response, not_found)
                yield response
            except TimeoutError:
                raise RegistryError(f"timed out after {self.timeout_seconds:g}s: {redact_url(url)}",
                                    fault=Fault.OCI_TIMEOUT, reason=ReadErrorReason.TIMEOUT, url=redact_url(url),
                                    temporary=True) from None
            except aiohttp.ClientConnectorError as exc:
                raise RegistryError(f"cannot connect to {redact_url(url)}: {exc.os_error.strerror or exc}",
                                    fault=Fault.OCI_UNREACHABLE, reason=ReadErrorReason.UNREACHABLE,
                                    url=redact_url(url), temporary=True) from None
            except aiohttp.ClientError as exc:
                raise RegistryError(f"{type(exc).__name__} from {redact_url(url)}",
                                    fault=Fault.OCI_PROTOCOL_ERROR, reason=ReadErrorReason.PROTOCOL_ERROR,
                                    url=redact_url(url), temporary=True) from None
            finally:
                if response is not None:
                    response.release()

    async def _raise_for_status(self, response: aiohttp.ClientResponse, not_found: Fault | None) -> None:
        status = response.status
        url = redact_url(str(response.url))
        codes: tuple[str, ...] = ()
        message = ""
        try:
            body = await read_capped(response, ERROR_BODY_LIMIT)
            parsed = json.loads(body)
            errors = parsed.get("errors") if isinstance(parsed, dict) else None
            if isinstance(errors, list):
                codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict))
                message = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        except (TimeoutError, ValueError, aiohttp.ClientError):
            pass
        said = f" ({', '.join(c for c in codes if c)}{': ' + message[:200] if message else ''})" if codes else ""
        if status == 404 and not_found is not None:
            fault = not_found
            if "NAME_UNKNOWN" in codes:
                fault = Fault.OCI_NAME_UNKNOWN
            elif "BLOB_UNKNOWN" in codes:
                fault = Fault.OCI_BLOB_UNKNOWN
            elif "MANIFEST_UNKNOWN" in codes:
                fault = Fault.OCI_MANIFEST_UNKNOWN
            raise RegistryNotFound(f"{url}: not found{said}", code=codes[0] if codes else None, fault=fault)
        table: dict[int, tuple[Fault, ReadErrorReason, str]] = {
            401: (Fault.OCI_UNAUTHORIZED, ReadErrorReason.UNAUTHORIZED, "authentication failed (check registry.username and password)"),
            403: (Fault.OCI_FORBIDDEN, ReadErrorReason.FORBIDDEN, "access denied"),
            429: (Fault.OCI_RATE_LIMITED, ReadErrorReason.RATE_LIMITED, "rate limited"),
        }
        if status in table:
            fault, reason, text = table[status]
        elif status >= 500:
            fault, reason, text = Fault.OCI_SERVER_ERROR, ReadErrorReason.SERVER_ERROR, "server error"
        else:
            fault, reason, text = Fault.OCI_PROTOCOL_ERROR, ReadErrorReason.PROTOCOL_ERROR, "unexpected status"
        raise RegistryError(f"HTTP {status} {text} from {url}{said}", fault=fault, reason=reason, status=status,
                            codes=codes, url=url, temporary=status == 429 or status >= 500)

    async def probe(self) -> float:
        """GET /v2/: the registry answers and accepts our credentials. Returns the seconds it took."""
        started = time.perf_counter()
        async with self.get("/v2/") as response:
            await response.read()
        return time.perf_counter() - started


# --- the store ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str]

    @classmethod
    def parse(cls, raw: Any) -> Descriptor:
        if not isinstance(raw, dict):
            raise ValueError("descriptor is not an object")
        size = raw.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"descriptor size {size!r} is not a non-negative integer")
        annotations = raw.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ValueError("descriptor annotations is not an object")
        return cls(str(raw.get("mediaType", "")), Digest.parse(str(raw.get("digest", ""))), size,
                   {str(k): str(v) for k, v in annotations.items()})

    @property
    def title(self) -> str:
        return self.annotations.get(TITLE_ANNOTATION, "")


@dataclass(slots=True)
class ResolvedManifest:
    reference: OciReference
    digest: Digest  # our own hash of the bytes
    media_type: str
    layers: list[Descriptor]
    claimed_digest: str | None  # Docker-Content-Digest, evidence only
    raw: bytes = b""


@dataclass(slots=True)
class OciRead:
    reference: OciReference
    manifest_digest: Digest
    layer: Descriptor
    size: int  # of the JAR
    sha256: str
    layer_size: int  # bytes actually read
    layer_sha256: str
    member: str | None
    seconds: float
    integrity_faults: list[Fault]

    @property
    def self_consistent(self) -> bool:
        return not self.integrity_faults


def choose_jar_layer(layers: list[Descriptor]) -> Descriptor:
    """The only layer; else the one that says it is a JAR; else a layout fault."""
    if not layers:
        raise LayoutError("the manifest has no layers", fault=Fault.OCI_NO_JAR_LAYER)
    if len(layers) == 1:
        chosen = layers[0]
    else:
        candidates = [d for d in layers if d.media_type == JAR_MEDIA_TYPE or d.title.lower().endswith(".jar")]
        if not candidates:
            raise LayoutError(f"none of the manifest's {len(layers)} layers is a JAR (by media type or title)",
                              fault=Fault.OCI_NO_JAR_LAYER)
        if len(candidates) > 1:
            names = ", ".join(d.title or str(d.digest)[:19] for d in candidates)
            raise LayoutError(f"{len(candidates)} layers look like the JAR: {names}",
                              fault=Fault.OCI_AMBIGUOUS_LAYERS)
        chosen = candidates[0]
    if chosen.media_type not in RAW_JAR_TYPES and chosen.media_type not in TAR_TYPES:
        raise LayoutError(f"layer media type {chosen.media_type!r} is not supported",
                          fault=Fault.OCI_UNSUPPORTED_MEDIA_TYPE)
    return chosen


def parse_manifest(body: bytes, content_type: str) -> tuple[str, list[Descriptor], list[Descriptor]]:
    """(media type, layers, child manifests of an index). Raises LayoutError on anything malformed."""
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        media_type = str(doc.get("mediaType") or content_type.split(";")[0].strip())
        if media_type in (OCI_INDEX, DOCKER_LIST) or ("manifests" in doc and "layers" not in doc):
            return media_type or OCI_INDEX, [], [Descriptor.parse(m) for m in doc.get("manifests") or []]
        if media_type and media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
            raise LayoutError(f"manifest media type {media_type!r} is not supported",
                              fault=Fault.OCI_UNSUPPORTED_MEDIA_TYPE)
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ValueError("no 'layers' list")
        return media_type or OCI_MANIFEST, [Descriptor.parse(layer) for layer in layers], []
    except (ValueError, InvalidDigest, TypeError) as exc:
        raise LayoutError(f"manifest is not valid: {exc}", fault=Fault.OCI_MANIFEST_INVALID) from None


class OciStore:
    def __init__(self, transport: RegistryTransport) -> None:
        self.transport = transport

    async def _fetch_manifest(self, repository: str, ref: str) -> tuple[bytes, str, str | None]:
        async with self.transport.get(
            f"/v2/{repository}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT},
            not_found=Fault.OCI_MANIFEST_UNKNOWN,
        ) as response:
            body = await read_capped(response, MANIFEST_LIMIT + 1)
            if len(body) > MANIFEST_LIMIT:
                raise LayoutError(f"manifest of {repository}:{ref} is larger than 4 MiB",
                                  fault=Fault.OCI_MANIFEST_TOO_LARGE)
            return body, response.headers.get("Content-Type", ""), response.headers.get("Docker-Content-Digest")

    async def resolve(self, reference: OciReference) -> ResolvedManifest:
        body, content_type, claimed = await self._fetch_manifest(reference.repository, reference.tag)
        digest = Digest(hashlib.sha256(body).hexdigest())
        media_type, layers, children = parse_manifest(body, content_type)
        if children:
            # An index around a single artifact manifest is accepted; anything richer is not a JAR.
            if len(children) != 1:
                raise LayoutError(f"{reference} is an index of {len(children)} manifests, not one JAR artifact",
                                  fault=Fault.OCI_UNSUPPORTED_MEDIA_TYPE)
            child = children[0]
            body, content_type, _ = await self._fetch_manifest(reference.repository, str(child.digest))
            actual = Digest(hashlib.sha256(body).hexdigest())
            if actual != child.digest:
                raise IntegrityError(
                    f"manifest {child.digest} served bytes hashing to {actual}",
                    fault=Fault.OCI_MANIFEST_DIGEST_MISMATCH, expected=str(child.digest), actual=str(actual),
                    bytes_read=len(body))
            media_type, layers, children = parse_manifest(body, content_type)
            if children:
                raise LayoutError("nested index", fault=Fault.OCI_UNSUPPORTED_MEDIA_TYPE)
        return ResolvedManifest(reference, digest, media_type, layers, claimed, body)

    async def read(self, reference: OciReference, member_sink: Any = None) -> OciRead:
        """Resolve, pick the layer, stream and hash it. ``member_sink(name)`` may spool the JAR bytes.

        ``OciRead.seconds`` leaves out time spent waiting on our own budgets: it is the registry's latency.
        """
        started = time.perf_counter()
        throttled = track_throttle()
        manifest = await self.resolve(reference)
        integrity: list[Fault] = []
        if manifest.claimed_digest and manifest.claimed_digest != str(manifest.digest):
            integrity.append(Fault.OCI_MANIFEST_DIGEST_MISMATCH)
        layer = choose_jar_layer(manifest.layers)
        layer_hash = Sha256Sink()
        is_tar = layer.media_type in TAR_TYPES
        tar_sink: TarJarSink | None = None
        sink: Sink
        if is_tar:
            tar_sink = TarJarSink(member_sink)
            sink = TeeSink(layer_hash, tar_sink)
        else:
            sink = TeeSink(layer_hash, member_sink("")) if member_sink else layer_hash
        async with self.transport.get(
            f"/v2/{reference.repository}/blobs/{layer.digest}", streaming=True, not_found=Fault.OCI_BLOB_UNKNOWN,
        ) as response:
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise RegistryError(f"blob {layer.digest} came with Content-Encoding {encoding!r} although we asked "
                                    "for identity: something between us and the registry re-encodes it",
                                    fault=Fault.OCI_PROTOCOL_ERROR, reason=ReadErrorReason.PROTOCOL_ERROR)
            try:
                await pump(self._chunks(response, layer.size), sink)
            except TimeoutError:  # first: aiohttp's ServerTimeoutError is a ClientConnectionError too
                raise RegistryError(f"blob {layer.digest} stalled for {self.transport.timeout_seconds:g}s",
                                    fault=Fault.OCI_TIMEOUT, reason=ReadErrorReason.TIMEOUT,
                                    temporary=True) from None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                raise RegistryError(f"blob {layer.digest} stream broke: {type(exc).__name__}",
                                    fault=Fault.OCI_PROTOCOL_ERROR, reason=ReadErrorReason.PROTOCOL_ERROR,
                                    temporary=True) from None
        if tar_sink is not None and tar_sink.error is not None:
            # the whole blob was drained into the layer digest, so the two cases can be told apart
            if layer_hash.size != layer.size or layer_hash.hexdigest != layer.digest.hex:
                return self._damaged(reference, manifest, layer, layer_hash, started, integrity)
            raise LayoutError(f"tar layer {layer.digest} is intact but cannot be read: {tar_sink.error}",
                              fault=Fault.OCI_UNSUPPORTED_MEDIA_TYPE)
        if layer_hash.size != layer.size:
            integrity.append(Fault.OCI_BLOB_SIZE_MISMATCH)
        if layer_hash.hexdigest != layer.digest.hex:
            integrity.append(Fault.OCI_BLOB_DIGEST_MISMATCH)
        member: str | None = None
        jar_size, jar_sha = layer_hash.size, layer_hash.hexdigest
        if tar_sink is not None and not tar_sink.is_raw_zip:
            jars = tar_sink.members
            if len(jars) != 1:
                if integrity:
                    return self._damaged(reference, manifest, layer, layer_hash, started, integrity)
                fault = Fault.OCI_NO_JAR_LAYER if not jars else Fault.OCI_AMBIGUOUS_LAYERS
                names = ", ".join(name for name, _ in jars)
                raise LayoutError(
                    f"the tar layer holds {len(jars)} .jar files{': ' + names if names else ''}", fault=fault)
            member, member_hash = jars[0]
            jar_size, jar_sha = member_hash.size, member_hash.hexdigest
        return OciRead(reference, manifest.digest, layer, jar_size, jar_sha, layer_hash.size,
                       layer_hash.hexdigest, member, time.perf_counter() - started - throttled(), integrity)

    def _damaged(self, reference: OciReference, manifest: ResolvedManifest, layer: Descriptor,
                 layer_hash: Sha256Sink, started: float, integrity: list[Fault]) -> OciRead:
        """A layer whose bytes contradict its descriptor and cannot be unpacked: the layer is the evidence."""
        faults = list(integrity)
        if layer_hash.size != layer.size and Fault.OCI_BLOB_SIZE_MISMATCH not in faults:
            faults.append(Fault.OCI_BLOB_SIZE_MISMATCH)
        if layer_hash.hexdigest != layer.digest.hex and Fault.OCI_BLOB_DIGEST_MISMATCH not in faults:
            faults.append(Fault.OCI_BLOB_DIGEST_MISMATCH)
        return OciRead(reference, manifest.digest, layer, layer_hash.size, layer_hash.hexdigest, layer_hash.size,
                       layer_hash.hexdigest, None, time.perf_counter() - started, faults)

    async def _chunks(self, response: aiohttp.ClientResponse, expected_size: int) -> AsyncIterator[bytes]:
        """The body, budgeted, stopping one byte past the descriptor's size (a runaway stream is a fault)."""
        remaining = expected_size + 1
        budget = self.transport.budget
        while remaining > 0:
            chunk = await response.content.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            await budget.bytes_read(len(chunk))
            yield chunk
