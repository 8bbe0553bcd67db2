"""Registry transport against small real HTTP servers: status mapping, redirects and credentials."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from tests.support.jars import jar_bytes
from verifier.errors import RegistryError, RegistryNotFound
from verifier.model import Fault, OciReference, ReadErrorReason
from verifier.stores.oci import Credentials, OciStore, RegistryTransport, redact_url

JAR = jar_bytes(50_000, seed=3)
JAR_DIGEST = "sha256:" + hashlib.sha256(JAR).hexdigest()
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.unknown.config.v1+json", "size": 2,
               "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    "layers": [{"mediaType": "application/java-archive", "size": len(JAR), "digest": JAR_DIGEST}],
}).encode()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def http() -> AsyncIterator[Callable[[web.Application], object]]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner, url = await serve(app)
        runners.append(runner)
        return url

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "fault", "reason"),
    [
        (401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, Fault.OCI_UNAUTHORIZED,
         ReadErrorReason.UNAUTHORIZED),
        (403, {"errors": [{"code": "DENIED", "message": "no"}]}, Fault.OCI_FORBIDDEN, ReadErrorReason.FORBIDDEN),
        (429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, Fault.OCI_RATE_LIMITED,
         ReadErrorReason.RATE_LIMITED),
        (503, "upstream unavailable", Fault.OCI_SERVER_ERROR, ReadErrorReason.SERVER_ERROR),
        (400, {"errors": [{"code": "MANIFEST_INVALID"}]}, Fault.OCI_PROTOCOL_ERROR, ReadErrorReason.PROTOCOL_ERROR),
    ],
)
async def test_status_codes_become_typed_errors(http, status: int, body: object, fault: Fault,
                                                reason: ReadErrorReason) -> None:
    async def handler(request: web.Request) -> web.Response:
        if isinstance(body, dict):
            return web.json_response(body, status=status)
        return web.Response(status=status, text=str(body))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    url = await http(app)
    async with RegistryTransport(url, timeout_seconds=5) as transport:
        with pytest.raises(RegistryError) as caught:
            await OciStore(transport).read(OciReference("acme/orders", "v1"))
    assert caught.value.fault is fault and caught.value.reason is reason and caught.value.status == status
    assert caught.value.temporary is (status in (429, 503))


async def test_zot_style_name_unknown_is_missing(http) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]},
                                 status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with RegistryTransport(await http(app)) as transport:
        with pytest.raises(RegistryNotFound) as caught:
            await OciStore(transport).read(OciReference("acme/orders", "v1"))
    assert caught.value.fault is Fault.OCI_NAME_UNKNOWN and caught.value.code == "NAME_UNKNOWN"


async def test_blob_redirect_to_another_host_carries_no_credentials(http) -> None:
    seen: dict[str, str | None] = {}

    async def storage(request: web.Request) -> web.Response:
        seen["storage_authorization"] = request.headers.get("Authorization")
        seen["storage_query"] = request.query_string
        return web.Response(body=JAR, content_type="application/octet-stream")

    storage_app = web.Application()
    storage_app.router.add_get("/bucket/{digest}", storage)
    storage_url = (await http(storage_app)).replace("127.0.0.1", "localhost")  # another origin

    async def manifest(request: web.Request) -> web.Response:
        seen["registry_authorization"] = request.headers.get("Authorization")
        return web.Response(body=MANIFEST, content_type="application/vnd.oci.image.manifest.v1+json")

    async def blob(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{storage_url}/bucket/{JAR_DIGEST}?X-Amz-Signature=secret")

    registry = web.Application()
    registry.router.add_get("/v2/acme/orders/manifests/v1", manifest)
    registry.router.add_get("/v2/acme/orders/blobs/{digest}", blob)
    async with RegistryTransport(await http(registry), credentials=Credentials("parity", "hunter2")) as transport:
        read = await OciStore(transport).read(OciReference("acme/orders", "v1"))
    assert read.sha256 == JAR_DIGEST.split(":")[1] and read.self_consistent
    assert seen["registry_authorization"] is not None and seen["registry_authorization"].startswith("Basic ")
    assert seen["storage_authorization"] is None
    assert "X-Amz-Signature" in seen["storage_query"]


async def test_a_runaway_blob_stream_stops_past_the_descriptor_size(http) -> None:
    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=MANIFEST, content_type="application/vnd.oci.image.manifest.v1+json")

    async def blob(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(JAR)
        for _ in range(64):  # 64 MiB more than promised, which we must not read to the end
            await response.write(b"\0" * (1 << 20))
        return response

    app = web.Application()
    app.router.add_get("/v2/acme/orders/manifests/v1", manifest)
    app.router.add_get("/v2/acme/orders/blobs/{digest}", blob)
    async with RegistryTransport(await http(app)) as transport:
        read = await OciStore(transport).read(OciReference("acme/orders", "v1"))
    assert read.layer_size == len(JAR) + 1
    assert Fault.OCI_BLOB_SIZE_MISMATCH in read.integrity_faults


async def test_manifest_over_4_mib_is_refused(http) -> None:
    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=b"{" + b" " * (5 << 20) + b"}", content_type="application/vnd.oci.image.manifest.v1+json")

    app = web.Application()
    app.router.add_get("/v2/acme/orders/manifests/v1", manifest)
    from verifier.errors import LayoutError

    async with RegistryTransport(await http(app)) as transport:
        with pytest.raises(LayoutError) as caught:
            await OciStore(transport).read(OciReference("acme/orders", "v1"))
    assert caught.value.fault is Fault.OCI_MANIFEST_TOO_LARGE


def test_redacted_urls_keep_no_userinfo_or_query() -> None:
    assert redact_url("https://u:p@s3.example:9000/b/k?X-Amz-Signature=abc") == "https://s3.example:9000/b/k"


async def test_we_ask_for_the_stored_bytes_and_refuse_a_re_encoded_blob(http) -> None:
    seen: dict[str, str] = {}

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=MANIFEST, content_type="application/vnd.oci.image.manifest.v1+json")

    async def blob(request: web.Request) -> web.Response:
        seen["accept_encoding"] = request.headers.get("Accept-Encoding", "")
        import gzip

        return web.Response(body=gzip.compress(JAR), headers={"Content-Encoding": "gzip"})  # a meddling proxy

    app = web.Application()
    app.router.add_get("/v2/acme/orders/manifests/v1", manifest)
    app.router.add_get("/v2/acme/orders/blobs/{digest}", blob)
    async with RegistryTransport(await http(app)) as transport:
        with pytest.raises(RegistryError) as caught:
            await OciStore(transport).read(OciReference("acme/orders", "v1"))
    assert seen["accept_encoding"] == "identity"
    assert caught.value.fault is Fault.OCI_PROTOCOL_ERROR and "Content-Encoding" in str(caught.value)


async def test_a_stalled_blob_is_a_timeout(http) -> None:
    import asyncio

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=MANIFEST, content_type="application/vnd.oci.image.manifest.v1+json")

    async def blob(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(JAR))})
        await response.prepare(request)
        await response.write(JAR[:1000])
        await asyncio.sleep(5)  # then nothing: the registry hangs mid-blob
        return response

    app = web.Application()
    app.router.add_get("/v2/acme/orders/manifests/v1", manifest)
    app.router.add_get("/v2/acme/orders/blobs/{digest}", blob)
    async with RegistryTransport(await http(app), timeout_seconds=0.5) as transport:
        with pytest.raises(RegistryError) as caught:
            await OciStore(transport).read(OciReference("acme/orders", "v1"))
    assert caught.value.fault is Fault.OCI_TIMEOUT and caught.value.reason is ReadErrorReason.TIMEOUT


async def test_read_latency_leaves_out_our_own_bandwidth_budget(http) -> None:
    import time

    from verifier.budget import RegistryBudget

    big = jar_bytes(3 << 20, seed=4)
    descriptor_manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": json.loads(MANIFEST)["config"],
        "layers": [{"mediaType": "application/java-archive", "size": len(big),
                    "digest": "sha256:" + hashlib.sha256(big).hexdigest()}],
    }).encode()

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=descriptor_manifest, content_type="application/vnd.oci.image.manifest.v1+json")

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=big)

    app = web.Application()
    app.router.add_get("/v2/acme/orders/manifests/v1", manifest)
    app.router.add_get("/v2/acme/orders/blobs/{digest}", blob)
    budget = RegistryBudget(bytes_per_second=2 << 20)  # 3 MiB at 2 MiB/s: about a second of our own waiting
    async with RegistryTransport(await http(app), budget=budget) as transport:
        started = time.perf_counter()
        read = await OciStore(transport).read(OciReference("acme/orders", "v1"))
        wall = time.perf_counter() - started
    assert read.self_consistent
    assert wall >= 0.5, "the budget paced the read"
    assert read.seconds < wall - 0.4, "the registry's latency does not include the time we chose to wait"
