"""A Zot emulator for the Zot-only endpoints, in front of the real CNCF distribution registry.

Zot cannot be installed here, so this serves what `/work/shared/zot-api.md` says Zot serves, and nothing
more: ``/v2/_oci/ext/discover``, ``/v2/_zot/ext/mgmt``, ``/v2/_zot/ext/search`` (GraphQL over GET and
POST, on graphql-core, with Zot's type and field names) and ``/v2/_zot/ext/cosign`` (key upload). Every
other ``/v2/`` request is passed through to the real registry: method, path, query, headers (with
``Authorization``), body streamed both ways, status, headers, ``Location`` rewritten to this server.

What the search API answers is read from the real registry where it can be (digest, layers, whether
the tag ``sha256-<hex>.sig`` exists, the signatures and whether a trusted cosign key verifies them); the
scanner is the part tests configure: :meth:`ZotEmulator.set_scan`, :meth:`set_scan_error`,
``cve_enabled``, ``cve_db_present``, :meth:`forbid`. Scannability follows zot-api.md: only when every layer
is a tar type; otherwise the exact "scanning is not supported for given" message.

Shapes copied from zot-api.md (and from gqlgen, which Zot uses): parse and validation errors → 422;
resolver errors → 200 with ``errors`` and ``data: null`` (``Image`` is non-null, so one failing alias voids
``data``; like gqlgen, every failing alias is reported); vulnerability-summary errors are partial: ``data``
is kept and the error's ``path`` is the ``Image`` field's alias; a repository the caller may not read
answers an object whose fields are all null, without an error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from graphql import GraphQLError, GraphQLSchema, build_schema, execute, parse, validate

from .registry import free_port

DISCOVER = "/v2/_oci/ext/discover"
SEARCH = "/v2/_zot/ext/search"
MGMT = "/v2/_zot/ext/mgmt"
USERPREFS = "/v2/_zot/ext/userprefs"
COSIGN = "/v2/_zot/ext/cosign"
NOTATION = "/v2/_zot/ext/notation"
ALL_ENDPOINTS = (SEARCH, MGMT, USERPREFS, COSIGN, NOTATION)
DEFAULT_ENDPOINTS = (SEARCH, MGMT, USERPREFS, COSIGN)

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
SCANNABLE_LAYERS = frozenset({
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
})
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ANNOTATION = "dev.cosignproject.cosign/signature"
SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})

SCHEMA_SDL = """
scalar Time

type Query {
  CVEListForImage(image: String!, requestedPage: PageInput, searchedCVE: String, excludedCVE: String,
                  severity: String): CVEResultForImage!
  ImageList(repo: String!, requestedPage: PageInput): PaginatedImagesResult!
  Image(image: String!): ImageSummary!
  Referrers(repo: String!, digest: String!, type: [String!]): [Referrer]!
}

input PageInput { limit: Int offset: Int sortBy: SortCriteria }
enum SortCriteria { RELEVANCE UPDATE_TIME ALPHABETIC_ASC ALPHABETIC_DSC STARS DOWNLOADS SEVERITY }
type PageInfo { TotalCount: Int! ItemCount: Int! }

type CVEResultForImage { Tag: String CVEList: [CVE] Summary: ImageVulnerabilitySummary Page: PageInfo }
type CVE { Id: String Title: String Description: String Reference: String Severity: String
           PackageList: [PackageInfo] }
type PackageInfo { Name: String PackagePath: String InstalledVersion: String FixedVersion: String }

type PaginatedImagesResult { Page: PageInfo Results: [ImageSummary!]! }

type ImageSummary {
  RepoName: String
  Tag: String
  Digest: String
  MediaType: String
  ArtifactType: String
  Manifests: [ManifestSummary]
  Size: String
  DownloadCount: Int
  LastUpdated: Time
  PushTimestamp: Time
  Description: String
  IsSigned: Boolean
  SignatureInfo: [SignatureSummary]
  Licenses: String
  Labels: String
  Title: String
  Source: String
  Documentation: String
  Authors: String
  Vendor: String
  Vulnerabilities: ImageVulnerabilitySummary
  Referrers: [Referrer]
  IsDeletable: Boolean
}

type ManifestSummary {
  Digest: String
  ConfigDigest: String
  LastUpdated: Time
  Size: String
  IsSigned: Boolean
  SignatureInfo: [SignatureSummary]
  Platform: Platform
  DownloadCount: Int
  Layers: [LayerSummary]
  Vulnerabilities: ImageVulnerabilitySummary
  Referrers: [Referrer]
  ArtifactType: String
}

type Platform { Os: String Arch: String }
type LayerSummary { Size: String Digest: String }
type ImageVulnerabilitySummary {
  MaxSeverity: String UnknownCount: Int LowCount: Int MediumCount: Int HighCount: Int CriticalCount: Int Count: Int
}
type SignatureSummary { Tool: String IsTrusted: Boolean Author: String }
type Referrer { MediaType: String ArtifactType: String Size: Int Digest: String Annotations: [Annotation]! }
type Annotation { Key: String Value: String }
"""

_IMAGE_FIELDS = ("RepoName", "Tag", "Digest", "MediaType", "ArtifactType", "Manifests", "Size", "DownloadCount",
                 "LastUpdated", "PushTimestamp", "Description", "IsSigned", "SignatureInfo", "Licenses", "Labels",
                 "Title", "Source", "Documentation", "Authors", "Vendor", "Vulnerabilities", "Referrers",
                 "IsDeletable")


class ResolverError(Exception):
    """A resolver error: Zot answers 200 with ``errors`` and ``data: null``."""


@dataclass
class ScanResult:
    max_severity: str
    counts: dict[str, int]

    def summary(self) -> dict[str, Any]:
        return {"MaxSeverity": self.max_severity, "Count": sum(self.counts.values()),
                **{f"{s.title()}Count": self.counts.get(s, 0) for s in SEVERITIES}}


def _empty_summary() -> dict[str, Any]:
    return ScanResult("", {}).summary()


@dataclass
class SearchRecord:
    method: str
    query: str
    status: int = 0
    url_length: int = 0  # of the URL as the client sent it (scheme, host, path and query)


class _Context:
    def __init__(self, emulator: ZotEmulator, authorization: str | None) -> None:
        self.emulator = emulator
        self.authorization = authorization
        self.resolver_errors: list[dict[str, Any]] = []
        self.partial_errors: list[dict[str, Any]] = []


def _all_null() -> dict[str, Any]:
    return dict.fromkeys(_IMAGE_FIELDS)


class _Image:
    """An ImageSummary read from the real registry; scan-related fields resolve lazily, like Zot's."""

    def __init__(self, ctx: _Context, repo: str, tag: str, manifest: bytes) -> None:
        self._ctx = ctx
        self._doc: dict[str, Any] = json.loads(manifest)
        self.RepoName = repo
        self.Tag = tag
        self.Digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.MediaType = self._doc.get("mediaType")
        config = self._doc.get("config") or {}
        self.ArtifactType = self._doc.get("artifactType") or config.get("mediaType")
        self._layers: list[dict[str, Any]] = [layer for layer in self._doc.get("layers") or []
                                               if isinstance(layer, dict)]
        size = len(manifest) + int(config.get("size") or 0) + sum(int(la.get("size") or 0) for la in self._layers)
        self.Size = str(size)
        annotations = self._doc.get("annotations") or {}
        self.LastUpdated = annotations.get("org.opencontainers.image.created")
        self.PushTimestamp = None
        self.DownloadCount = 0
        self.Description = annotations.get("org.opencontainers.image.description")
        self.Licenses = annotations.get("org.opencontainers.image.licenses")
        self.Labels = None
        self.Title = annotations.get("org.opencontainers.image.title")
        self.Source = annotations.get("org.opencontainers.image.source")
        self.Documentation = annotations.get("org.opencontainers.image.documentation")
        self.Authors = annotations.get("org.opencontainers.image.authors")
        self.Vendor = annotations.get("org.opencontainers.image.vendor")
        self.IsDeletable = True
        self.Referrers: list[Any] = []  # the distribution registry has no referrers API
        self._signatures: asyncio.Task[list[dict[str, Any]] | None] | None = None

    def _signature_task(self) -> asyncio.Task[list[dict[str, Any]] | None]:
        if self._signatures is None:
            self._signatures = asyncio.ensure_future(
                self._ctx.emulator._signature_info(self.RepoName, self.Digest, self._ctx.authorization))
        return self._signatures

    async def IsSigned(self, info: Any) -> bool:
        return await self._signature_task() is not None

    async def SignatureInfo(self, info: Any) -> list[dict[str, Any]]:
        return await self._signature_task() or []

    def Vulnerabilities(self, info: Any) -> dict[str, Any]:
        summary, error = self._ctx.emulator._vulnerabilities(self.RepoName, self.Tag, self.Digest, self._layers)
        if error is not None:
            self._ctx.partial_errors.append({
                "message": f"unable to run vulnerability scan on tag {self.Tag} in repo {self.RepoName}: "
                           f"error: {error}",
                "path": info.path.as_list()[:1],
            })
        return summary

    def Manifests(self, info: Any) -> list[dict[str, Any]]:
        config = self._doc.get("config") or {}
        image = self

        def vulnerabilities(info: Any) -> dict[str, Any]:
            summary, error = image._ctx.emulator._vulnerabilities(image.RepoName, image.Tag, image.Digest,
                                                                   image._layers)
            if error is not None:
                image._ctx.partial_errors.append({
                    "message": f"unable to run vulnerability scan in repo {image.RepoName}: manifest digest: "
                               f"{image.Digest}, error: {error}",
                    "path": info.path.as_list()[:1],
                })
            return summary

        return [{
            "Digest": self.Digest, "ConfigDigest": config.get("digest"), "LastUpdated": self.LastUpdated,
            "Size": self.Size, "IsSigned": self.IsSigned, "SignatureInfo": self.SignatureInfo,
            "Platform": {"Os": None, "Arch": None}, "DownloadCount": 0,
            "Layers": [{"Size": str(la.get("size")), "Digest": la.get("digest")} for la in self._layers],
            "Vulnerabilities": vulnerabilities, "Referrers": [], "ArtifactType": self.ArtifactType,
        }]


class _Root:
    def __init__(self, ctx: _Context) -> None:
        self._ctx = ctx

    async def Image(self, info: Any, image: str) -> Any:
        try:
            return await self._ctx.emulator._image(self._ctx, image)
        except ResolverError as exc:
            # gqlgen reports every failing root field and nulls `data` (Image is non-null); graphql-core
            # would stop at the first, so the error is collected here and `data` voided afterwards.
            self._ctx.resolver_errors.append({"message": str(exc), "path": [info.path.key]})
            return _all_null()

    async def CVEListForImage(self, info: Any, image: str, requestedPage: dict[str, Any] | None = None,
                              searchedCVE: str | None = None, excludedCVE: str | None = None,
                              severity: str | None = None) -> Any:
        try:
            return await self._ctx.emulator._cve_list(self._ctx, image, requestedPage or {}, searchedCVE,
                                                      excludedCVE, severity)
        except ResolverError as exc:
            self._ctx.resolver_errors.append({"message": str(exc), "path": [info.path.key]})
            return {}

    async def ImageList(self, info: Any, repo: str, requestedPage: dict[str, Any] | None = None) -> Any:
        return await self._ctx.emulator._image_list(self._ctx, repo, requestedPage or {})

    async def Referrers(self, info: Any, repo: str, digest: str, type: list[str] | None = None) -> list[Any]:
        return []


class ZotEmulator:
    """Start with ``async with ZotEmulator(backing_url) as zot:``; ``zot.url`` is the registry to use."""

    def __init__(self, backing_url: str, *, release_tag: str = "v2.1.20", commit: str | None = None,
                 binary_type: str = "-imagetrust-lint-metrics-mgmt-scrub-search-sync-ui-userprefs",
                 endpoints: Iterable[str] = DEFAULT_ENDPOINTS, auth_methods: Iterable[str] = ("htpasswd",),
                 dist_spec_version: str = "1.1.1") -> None:
        self.backing_url = backing_url.rstrip("/")
        self.schema: GraphQLSchema = build_schema(SCHEMA_SDL)
        self._defaults = dict(release_tag=release_tag, commit=commit or f"{release_tag}-0-gdeadbeef",
                              binary_type=binary_type, endpoints=list(endpoints), auth_methods=list(auth_methods),
                              dist_spec_version=dist_spec_version)
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.reset()

    # --- configuration by tests -------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to a freshly started Zot with search, CVE scanning and a downloaded DB; no keys, no scans."""
        self.release_tag: str = self._defaults["release_tag"]
        self.commit: str = self._defaults["commit"]
        self.binary_type: str = self._defaults["binary_type"]
        self.endpoints: list[str] = list(self._defaults["endpoints"])
        self.auth_methods: list[str] = list(self._defaults["auth_methods"])
        self.dist_spec_version: str = self._defaults["dist_spec_version"]
        self.cve_enabled = True
        self.cve_db_present = True
        self.legacy_scan_message = False  # Zot before v2.1.11 said "… for given image media type"
        self.scans: dict[str, ScanResult] = {}
        self.scan_errors: dict[str, str] = {}
        self.forbidden: set[str] = set()
        self.trusted_keys: list[bytes] = []
        self.search_requests: list[SearchRecord] = []
        self.cve_list_calls = 0
        self.proxied = 0

    def set_scan(self, reference: str, *, max_severity: str | None = None,
                 counts: dict[str, int] | None = None) -> None:
        """The scan result Zot's cache holds for ``repo:tag``. MaxSeverity defaults to the highest count."""
        normalised = {k.upper(): int(v) for k, v in (counts or {}).items() if int(v) > 0}
        if max_severity is None:
            max_severity = next((s for s in reversed(SEVERITIES) if normalised.get(s)), "NONE")
        self.scans[reference] = ScanResult(max_severity, normalised)

    def set_scan_error(self, reference: str, message: str) -> None:
        """The scanner fails for ``repo:tag`` with ``message`` (a partial error, as Zot reports it)."""
        self.scan_errors[reference] = message

    def forbid(self, repository: str) -> None:
        """The caller may not read ``repository``: Zot answers an all-null object, without an error."""
        self.forbidden.add(repository)

    def trust_cosign_key(self, pem: bytes | str) -> None:
        """As ``POST /v2/_zot/ext/cosign`` does: signatures verifying with this key become trusted."""
        self.trusted_keys.append(pem.encode() if isinstance(pem, str) else pem)

    def enable(self, *endpoints: str) -> None:
        self.endpoints = [e for e in ALL_ENDPOINTS if e in set(self.endpoints) | set(endpoints)]

    def disable(self, *endpoints: str) -> None:
        self.endpoints = [e for e in self.endpoints if e not in endpoints]

    @property
    def image_queries(self) -> int:
        """How many search requests asked for ``Image``."""
        return sum(1 for r in self.search_requests if "Image(" in r.query)

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ZotEmulator:
        self._session = aiohttp.ClientSession(trust_env=False, auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("GET", DISCOVER, self._discover)
        app.router.add_route("GET", MGMT, self._mgmt)
        app.router.add_route("GET", SEARCH, self._search)
        app.router.add_route("POST", SEARCH, self._search)
        app.router.add_route("POST", COSIGN, self._cosign_upload)
        app.router.add_route("*", "/v2/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ZotEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- Zot's own endpoints --------------------------------------------------------------------------

    @staticmethod
    def _not_found() -> web.Response:
        return web.Response(status=404, text="404 page not found\n", content_type="text/plain")

    async def _discover(self, request: web.Request) -> web.Response:
        if not self.endpoints:
            return web.json_response({"extensions": []})
        return web.json_response({"extensions": [{
            "name": "_zot",
            "url": f"https://github.com/project-zot/zot/blob/{self.release_tag}/pkg/extensions/_zot.md",
            "description": "zot registry extensions",
            "endpoints": list(self.endpoints),
        }]})

    async def _mgmt(self, request: web.Request) -> web.Response:
        if MGMT not in self.endpoints:
            return self._not_found()
        return web.json_response({  # reachable without credentials
            "distSpecVersion": self.dist_spec_version,
            "commit": self.commit,
            "releaseTag": self.release_tag,
            "binaryType": self.binary_type,
            "http": {"auth": {method: {} for method in self.auth_methods}},
        })

    async def _authorised(self, request: web.Request) -> web.Response | None:
        """The real registry decides whether the caller's credentials are good."""
        assert self._session is not None
        headers = {"Authorization": request.headers["Authorization"]} if "Authorization" in request.headers else {}
        async with self._session.get(self.backing_url + "/v2/", headers=headers) as response:
            if response.status == 200:
                return None
            body = await response.read()
            out = web.Response(status=response.status, body=body,
                               content_type=response.content_type or "application/json")
            if "WWW-Authenticate" in response.headers:
                out.headers["WWW-Authenticate"] = response.headers["WWW-Authenticate"]
            return out

    async def _cosign_upload(self, request: web.Request) -> web.Response:
        if COSIGN not in self.endpoints:
            return self._not_found()
        denied = await self._authorised(request)
        if denied is not None:
            return denied
        pem = await request.read()
        try:
            serialization.load_pem_public_key(pem)
        except ValueError as exc:
            return web.json_response({"errors": [{"code": "BAD_REQUEST", "message": str(exc)}]}, status=400)
        self.trust_cosign_key(pem)
        return web.Response(status=200)

    async def _search(self, request: web.Request) -> web.Response:
        if SEARCH not in self.endpoints:
            return self._not_found()
        denied = await self._authorised(request)
        if denied is not None:
            return denied
        record = SearchRecord(request.method, "", url_length=len(self.url) + len(request.raw_path))
        self.search_requests.append(record)
        query, variables, problem = await self._read_request(request)
        record.query = query or ""
        if problem is not None:
            record.status = 422
            return self._unprocessable([{"message": problem, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}])
        try:
            document = parse(query or "")
        except GraphQLError as exc:
            record.status = 422
            return self._unprocessable([{**exc.formatted, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}])
        invalid = validate(self.schema, document)
        if invalid:
            record.status = 422
            return self._unprocessable([{**e.formatted, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
                                        for e in invalid])
        ctx = _Context(self, request.headers.get("Authorization"))
        result = execute(self.schema, document, root_value=_Root(ctx), context_value=ctx,
                         variable_values=variables)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        errors = [e.formatted for e in result.errors or []] + ctx.resolver_errors + ctx.partial_errors
        data = None if ctx.resolver_errors else result.data
        body: dict[str, Any] = {}
        if errors:
            body["errors"] = errors
        body["data"] = data
        record.status = 200
        return web.json_response(body)

    @staticmethod
    def _unprocessable(errors: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"errors": errors, "data": None}, status=422)

    @staticmethod
    async def _read_request(request: web.Request) -> tuple[str | None, dict[str, Any] | None, str | None]:
        if request.method == "GET":
            query = request.query.get("query")
            raw_vars = request.query.get("variables")
        else:
            try:
                doc = json.loads(await request.read())
            except ValueError:
                return None, None, "json request body could not be decoded"
            if not isinstance(doc, dict):
                return None, None, "json request body could not be decoded"
            query, raw_vars = doc.get("query"), doc.get("variables")
        if not query:
            return None, None, "no operation provided"
        variables: Any = raw_vars
        if isinstance(raw_vars, str):
            try:
                variables = json.loads(raw_vars)
            except ValueError:
                return None, None, "variables could not be decoded"
        return query, variables if isinstance(variables, dict) else None, None

    # --- resolvers' data ------------------------------------------------------------------------------

    async def _backing_get(self, path: str, authorization: str | None, *, accept: str = MANIFEST_ACCEPT
                           ) -> tuple[int, bytes, str]:
        assert self._session is not None
        headers = {"Accept": accept}
        if authorization:
            headers["Authorization"] = authorization
        async with self._session.get(self.backing_url + path, headers=headers) as response:
            return response.status, await response.read(), response.headers.get("Content-Type", "")

    async def _manifest(self, repo: str, ref: str, authorization: str | None) -> bytes | None:
        """The manifest bytes, None when the tag is unknown; ``forbidden`` raises PermissionError."""
        status, body, _ = await self._backing_get(f"/v2/{repo}/manifests/{ref}", authorization)
        if status == 200:
            return body
        if status == 404:
            return None
        if status in (401, 403):
            raise PermissionError(repo)
        raise ResolverError(f"failed to read manifest of {repo}:{ref}: status {status}")

    async def _image(self, ctx: _Context, image: str) -> Any:
        repo, tag = self._parse_image(image)
        if repo in self.forbidden:
            return _all_null()
        try:
            manifest = await self._manifest(repo, tag, ctx.authorization)
        except PermissionError:
            return _all_null()
        if manifest is None:
            raise ResolverError(f"can't find image: {repo}:{tag}")
        return _Image(ctx, repo, tag, manifest)

    @staticmethod
    def _parse_image(image: str) -> tuple[str, str]:
        """Only ``repo:tag`` works in ``Image`` (zot-api.md)."""
        name = image.split("@", 1)[0]
        repo, sep, tag = name.rpartition(":")
        if not sep or not repo or "/" in tag:
            raise ResolverError("no reference provided")
        if "@" in image:
            raise ResolverError(f"can't find image: {image}")
        return repo, tag

    def _vulnerabilities(self, repo: str, tag: str, digest: str, layers: list[dict[str, Any]]
                         ) -> tuple[dict[str, Any], str | None]:
        """The summary from the scan cache, and the scanner's error if any (zot-api.md, "What a
        vulnerability summary means")."""
        reference = f"{repo}:{tag}"
        if not self.cve_enabled:
            return _empty_summary(), "cve search is disabled"
        blocking = next((la.get("mediaType") for la in layers if la.get("mediaType") not in SCANNABLE_LAYERS), None)
        if blocking is not None or not layers:
            if self.legacy_scan_message:
                return _empty_summary(), f"image '{repo}@{digest}' scanning is not supported for given image media type"
            return _empty_summary(), (f"image '{repo}@{digest}' scanning is not supported for given media type: "
                                      f"layer media type '{blocking}'")
        if reference in self.scan_errors:
            return _empty_summary(), self.scan_errors[reference]
        if not self.cve_db_present:
            return _empty_summary(), "cve-db is not present"
        result = self.scans.get(reference)
        return (result.summary() if result is not None else _empty_summary()), None

    async def _signature_info(self, repo: str, digest: str, authorization: str | None
                              ) -> list[dict[str, Any]] | None:
        """None when there is no ``sha256-<hex>.sig`` tag; else one SignatureSummary per signature layer."""
        manifest = await self._manifest(repo, f"sha256-{digest.split(':', 1)[1]}.sig", authorization)
        if manifest is None:
            return None
        entries = []
        for layer in json.loads(manifest).get("layers") or []:
            if layer.get("mediaType") != COSIGN_LAYER:
                continue
            status, payload, _ = await self._backing_get(f"/v2/{repo}/blobs/{layer.get('digest')}", authorization,
                                                         accept="*/*")
            signature = (layer.get("annotations") or {}).get(COSIGN_ANNOTATION, "")
            key = self._trusted_by(payload, signature) if status == 200 else None
            entries.append({"Tool": "cosign", "IsTrusted": key is not None,
                            "Author": key.decode() if key is not None else ""})
        return entries

    def _trusted_by(self, payload: bytes, signature_b64: str) -> bytes | None:
        """Zot's check: the signature over the payload verifies with an uploaded public key."""
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            return None
        for pem in self.trusted_keys:
            key = serialization.load_pem_public_key(pem)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                continue
            try:
                key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
                return pem
            except InvalidSignature:
                continue
        return None

    async def _cve_list(self, ctx: _Context, image: str, page: dict[str, Any], searched: str | None,
                        excluded: str | None, severity: str | None) -> dict[str, Any]:
        """An on-demand scan (zot-api.md: it blocks until done); counted so tests can assert it is unused."""
        self.cve_list_calls += 1
        if not self.cve_enabled:
            raise ResolverError("cve search is disabled")
        limit = page.get("limit")
        if isinstance(limit, int) and limit > 4096:
            raise ResolverError("pagination limit has excessive value")
        name, _, digest = image.partition("@")
        if digest:
            repo, ref = name, digest
        else:
            repo, sep, ref = name.rpartition(":")
            if not sep:
                raise ResolverError("no reference provided")
        if repo in self.forbidden:
            raise ResolverError(f"can't find image: {image}")
        try:
            manifest = await self._manifest(repo, ref, ctx.authorization)
        except PermissionError:
            raise ResolverError(f"can't find image: {image}") from None
        if manifest is None:
            raise ResolverError(f"can't find image: {image}")
        img = _Image(ctx, repo, ref, manifest)
        summary, error = self._vulnerabilities(repo, ref, img.Digest, img._layers)
        if error is not None:
            raise ResolverError(error)
        result = self.scans.get(f"{repo}:{ref}") or ScanResult("NONE", {})
        cves = [
            {"Id": f"CVE-2024-{SEVERITIES.index(sev)}{n:04d}", "Title": f"emulated {sev.lower()} finding {n}",
             "Description": "emulated", "Reference": "https://example.invalid", "Severity": sev,
             "PackageList": [{"Name": "example", "PackagePath": "app.jar", "InstalledVersion": "1.0",
                              "FixedVersion": "1.1"}]}
            for sev in reversed(SEVERITIES) for n in range(result.counts.get(sev, 0))
        ]
        if severity:
            cves = [c for c in cves if c["Severity"] == severity]
        if searched:
            cves = [c for c in cves if searched in c["Id"] or searched in c["Title"]]
        if excluded:
            cves = [c for c in cves if excluded not in c["Id"] and excluded not in c["Title"]]
        offset = int(page.get("offset") or 0)
        shown = cves[offset: offset + limit] if isinstance(limit, int) and limit > 0 else cves[offset:]
        return {"Tag": ref if not digest else None, "CVEList": shown, "Summary": result.summary(),
                "Page": {"TotalCount": len(cves), "ItemCount": len(shown)}}

    async def _image_list(self, ctx: _Context, repo: str, page: dict[str, Any]) -> dict[str, Any]:
        if repo:
            repos = [repo]
        else:
            status, body, _ = await self._backing_get("/v2/_catalog", ctx.authorization, accept="application/json")
            repos = json.loads(body).get("repositories") or [] if status == 200 else []
        results: list[Any] = []
        for name in repos:
            if name in self.forbidden:
                continue
            status, body, _ = await self._backing_get(f"/v2/{name}/tags/list", ctx.authorization,
                                                      accept="application/json")
            if status != 200:
                continue
            for tag in sorted(json.loads(body).get("tags") or []):
                if tag.startswith("sha256-"):  # signatures and attestations are not images
                    continue
                manifest = await self._manifest(name, tag, ctx.authorization)
                if manifest is not None:
                    results.append(_Image(ctx, name, tag, manifest))
        offset = int(page.get("offset") or 0)
        limit = page.get("limit")
        shown = results[offset: offset + limit] if isinstance(limit, int) and limit > 0 else results[offset:]
        return {"Page": {"TotalCount": len(results), "ItemCount": len(shown)}, "Results": shown}

    # --- everything else: the real registry -----------------------------------------------------------

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.proxied += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        data = request.content if request.body_exists else None
        async with self._session.request(request.method, self.backing_url + request.path_qs, headers=headers,
                                         data=data, allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                lower = key.lower()
                if lower in HOP_BY_HOP and lower != "content-length":
                    continue
                if lower == "location" and value.startswith(self.backing_url):
                    value = self.url + value[len(self.backing_url):]
                response.headers.add(key, value)
            if request.method == "HEAD":
                await response.prepare(request)
                return response
            length = upstream.headers.get("Content-Length")
            if length is not None:
                response.content_length = int(length)
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(1 << 16):
                await response.write(chunk)
            await response.write_eof()
            return response
