"""A counting reverse proxy on 127.0.0.1 in front of the real registry: what the verifier really sends.

Budgets are asserted where they matter, at the registry's door: every request is logged with its
start and end (monotonic seconds), its status and the body bytes passed back, and the proxy tracks
how many requests (and blob streams) were open at once. Blob GETs can be held at the door
(`hold_blobs()` … `release_blobs()`) to keep a check in flight for as long as a test needs, and the
registry can be made to fail (`fail_with(503)` … `fail_with(None)`).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host", "content-length"}
_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass
class Seen:
    method: str
    path: str
    started: float
    finished: float | None = None
    status: int | None = None
    bytes: int = 0

    @property
    def manifest(self) -> str | None:
        """`repository:tag` of a manifest request by tag, else None."""
        match = _MANIFEST.match(self.path)
        if match is None or match["ref"].startswith("sha256:"):
            return None
        return f"{match['repo']}:{match['ref']}"

    @property
    def blob(self) -> str | None:
        match = _BLOB.match(self.path)
        return match["digest"] if match else None


class CountingProxy:
    """``async with CountingProxy(registry.url) as proxy:`` then point `registry.url` at ``proxy.url``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.blobs_in_flight = 0
        self.max_blobs_in_flight = 0
        self._open = asyncio.Event()
        self._open.set()
        self._failing: int | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> CountingProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False, trust_env=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._open.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- controls -------------------------------------------------------------------------------

    def hold_blobs(self) -> None:
        """Blob GETs that arrive from now on wait at the door (they are logged as started)."""
        self._open.clear()

    def release_blobs(self) -> None:
        self._open.set()

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this status (and an OCI error body) instead of forwarding; None: forward."""
        self._failing = status

    def reset(self) -> None:
        self.seen.clear()
        self.max_in_flight = self.in_flight
        self.max_blobs_in_flight = self.blobs_in_flight

    # --- what was seen --------------------------------------------------------------------------

    def manifests(self) -> list[str]:
        """`repository:tag` of every manifest GET by tag, in the order they arrived."""
        return [s.manifest for s in self.seen if s.method == "GET" and s.manifest is not None]

    def blobs(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.blob is not None]

    # --- forwarding -----------------------------------------------------------------------------

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        seen = Seen(request.method, request.path, time.monotonic())
        self.seen.append(seen)
        is_blob = request.method == "GET" and seen.blob is not None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if is_blob:
            self.blobs_in_flight += 1
            self.max_blobs_in_flight = max(self.max_blobs_in_flight, self.blobs_in_flight)
        try:
            if self._failing is not None:
                seen.status = self._failing
                return web.json_response({"errors": [{"code": "UNAVAILABLE", "message": "planted by the test"}]},
                                         status=self._failing)
            if is_blob:
                await self._open.wait()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            body = await request.read()
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body or None,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                for key, value in upstream.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        response.headers.add(key, value)
                if upstream.content_length is not None and request.method != "HEAD":
                    response.content_length = upstream.content_length
                seen.status = upstream.status
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(1 << 16):
                    await response.write(chunk)
                    seen.bytes += len(chunk)
                await response.write_eof()
                return response
        finally:
            seen.finished = time.monotonic()
            self.in_flight -= 1
            if is_blob:
                self.blobs_in_flight -= 1
