"""The emulator answers as zot-api.md says Zot answers; a test double that drifts proves nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.jars import jar_bytes
from tests.support.registry import RegistryServer
from tests.support.zot_emulator import COSIGN, MGMT, SEARCH, USERPREFS, ZotEmulator
from tests.zot.helpers import Apps, credentials
from verifier.stores.oci import OciStore, RegistryTransport


@pytest.fixture
async def http(zot_backing_registry: RegistryServer) -> AsyncIterator[aiohttp.ClientSession]:
    auth = credentials(zot_backing_registry).basic_header()
    async with aiohttp.ClientSession(headers={"Authorization": auth}, trust_env=False) as session:
        yield session


async def _search(http: aiohttp.ClientSession, zot: ZotEmulator, query: str) -> tuple[int, Any]:
    async with http.get(f"{zot.url}{SEARCH}", params={"query": query}) as response:
        return response.status, await response.json(content_type=None)


async def test_discover_lists_enabled_endpoints(zot: ZotEmulator) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{zot.url}/v2/_oci/ext/discover") as response:
            doc = await response.json()
        assert doc == {"extensions": [{
            "name": "_zot", "url": "https://github.com/project-zot/zot/blob/v2.1.20/pkg/extensions/_zot.md",
            "description": "zot registry extensions", "endpoints": [SEARCH, MGMT, USERPREFS, COSIGN]}]}
        zot.disable(SEARCH, MGMT, USERPREFS, COSIGN)
        async with anonymous.get(f"{zot.url}/v2/_oci/ext/discover") as response:
            assert await response.json() == {"extensions": []}
        async with anonymous.get(f"{zot.url}{MGMT}") as response:
            assert response.status == 404


async def test_mgmt_needs_no_credentials(zot: ZotEmulator) -> None:
    async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{zot.url}{MGMT}") as response:
        assert response.status == 200
        doc = await response.json()
    assert doc["distSpecVersion"] == "1.1.1" and doc["releaseTag"] == "v2.1.20"
    assert doc["commit"].startswith("v2.1.20-") and "-search-" in doc["binaryType"]
    assert doc["http"]["auth"] == {"htpasswd": {}}


async def test_search_needs_credentials(zot: ZotEmulator) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{zot.url}{SEARCH}", params={"query": "{ImageList(repo:\"\"){Page{TotalCount}}}"}
                                 ) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize("query", [
    "{Image(image:\"a:b\"){NoSuchField}}",  # unknown field
    "{Image(img:\"a:b\"){Digest}}",  # bad argument
    "{Image(image:\"a:b\"){Digest}",  # does not parse
])
async def test_parse_and_validation_errors_are_422(query: str, zot: ZotEmulator, http: aiohttp.ClientSession
                                                   ) -> None:
    status, doc = await _search(http, zot, query)
    assert status == 422 and doc["data"] is None and doc["errors"][0]["message"]


async def test_missing_query_is_422(zot: ZotEmulator, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{zot.url}{SEARCH}") as response:
        assert response.status == 422


async def test_resolver_errors_void_data(zot: ZotEmulator, http: aiohttp.ClientSession, apps: Apps) -> None:
    apps.push("orders", "1")
    repo = apps.repository("orders")
    status, doc = await _search(http, zot, f'{{a:Image(image:"{repo}:1"){{Digest}} '
                                           f'b:Image(image:"{repo}:v9"){{Digest}} c:Image(image:"{repo}"){{Digest}}}}')
    assert status == 200 and doc["data"] is None
    assert {(e["message"], tuple(e["path"])) for e in doc["errors"]} == {
        (f"can't find image: {repo}:1", ("a",)), (f"can't find image: {repo}:v9", ("b",)),
        ("no reference provided", ("c",))}


async def test_vulnerability_errors_are_partial(zot: ZotEmulator, http: aiohttp.ClientSession, apps: Apps) -> None:
    digest = apps.push("orders", "1", scannable=False)
    repo = apps.repository("orders")
    status, doc = await _search(http, zot, f'{{v0:Image(image:"{repo}:v1"){{RepoName Tag Digest '
                                           f'Vulnerabilities{{MaxSeverity Count}}}}}}')
    assert status == 200
    assert doc["data"]["v0"] == {"RepoName": repo, "Tag": "v1", "Digest": digest,
                                 "Vulnerabilities": {"MaxSeverity": "", "Count": 0}}
    assert doc["errors"] == [{
        "message": f"unable to run vulnerability scan on tag v1 in repo {repo}: error: image '{repo}@{digest}' "
                   "scanning is not supported for given media type: layer media type 'application/java-archive'",
        "path": ["v0"]}]
    # not asking for Vulnerabilities asks for no scan, and so no error
    status, doc = await _search(http, zot, f'{{v0:Image(image:"{repo}:v1"){{Digest}}}}')
    assert "errors" not in doc and doc["data"]["v0"]["Digest"] == digest


async def test_forbidden_repository_is_all_null(zot: ZotEmulator, http: aiohttp.ClientSession, apps: Apps) -> None:
    apps.push("orders", "1")
    zot.forbid(apps.repository("orders"))
    status, doc = await _search(http, zot, f'{{Image(image:"{apps.repository("orders")}:v1"){{RepoName Tag Digest '
                                           'IsSigned Vulnerabilities{MaxSeverity}}}')
    assert status == 200 and "errors" not in doc
    assert doc["data"]["Image"] == {"RepoName": None, "Tag": None, "Digest": None, "IsSigned": None,
                                    "Vulnerabilities": None}


async def test_post_and_variables(zot: ZotEmulator, http: aiohttp.ClientSession, apps: Apps) -> None:
    apps.push("orders", "1")
    zot.set_scan(apps.reference("orders", "1"), counts={"HIGH": 2, "LOW": 1})
    body = {"query": "query Q($i: String!) { Image(image: $i) { Vulnerabilities { MaxSeverity Count HighCount "
                     "LowCount CriticalCount } } }", "variables": {"i": apps.reference("orders", "1")}}
    async with http.post(f"{zot.url}{SEARCH}", json=body) as response:
        doc = await response.json()
    assert doc["data"]["Image"]["Vulnerabilities"] == {"MaxSeverity": "HIGH", "Count": 3, "HighCount": 2,
                                                       "LowCount": 1, "CriticalCount": 0}
    assert zot.search_requests[-1].method == "POST"


async def test_cve_list_for_image(zot: ZotEmulator, http: aiohttp.ClientSession, apps: Apps) -> None:
    apps.push("orders", "1")
    ref = apps.reference("orders", "1")
    zot.set_scan(ref, counts={"CRITICAL": 1, "LOW": 2})
    query = (f'{{CVEListForImage(image:"{ref}", requestedPage:{{limit:2, offset:0}}, severity:"LOW")'
             '{Tag CVEList{Id Severity PackageList{Name FixedVersion}} Summary{MaxSeverity Count} '
             'Page{TotalCount ItemCount}}}')
    status, doc = await _search(http, zot, query)
    result = doc["data"]["CVEListForImage"]
    assert result["Summary"] == {"MaxSeverity": "CRITICAL", "Count": 3}  # regardless of filters
    assert result["Page"] == {"TotalCount": 2, "ItemCount": 2}
    assert {c["Severity"] for c in result["CVEList"]} == {"LOW"}
    status, doc = await _search(http, zot, f'{{CVEListForImage(image:"{ref}", requestedPage:{{limit:5000}})'
                                           '{Tag}}')
    assert doc["data"] is None and doc["errors"][0]["message"] == "pagination limit has excessive value"
    assert zot.cve_list_calls == 2


async def test_image_list_skips_signatures(zot: ZotEmulator, http: aiohttp.ClientSession, apps: Apps,
                                           cosign_keys) -> None:
    from tests.support.cosign import sign_and_push

    digest = apps.push("orders", "1")
    apps.push("orders", "2")
    sign_and_push(cosign_keys[0], apps.registry, apps.repository("orders"), digest)
    status, doc = await _search(http, zot, f'{{ImageList(repo:"{apps.repository("orders")}")'
                                           '{Page{TotalCount ItemCount} Results{Tag IsSigned}}}')
    assert doc["data"]["ImageList"] == {"Page": {"TotalCount": 2, "ItemCount": 2},
                                        "Results": [{"Tag": "v1", "IsSigned": True}, {"Tag": "v2", "IsSigned": False}]}


async def test_passthrough_reads_and_writes_the_real_registry(zot: ZotEmulator, zot_backing_registry: RegistryServer,
                                                              zot_transport: RegistryTransport, apps: Apps) -> None:
    """Pushing through the emulator (upload Location rewritten to it) and reading back with our store."""
    through = RegistryServer(zot.url, zot_backing_registry.storage, zot_backing_registry.username,
                             zot_backing_registry.password)
    jar = jar_bytes(200_000, seed=3)
    from tests.support.registry import Layer
    await asyncio.to_thread(through.push_manifest, apps.repository("orders"), "v1", [Layer(jar)])

    read = await OciStore(zot_transport).read(apps.coordinates("orders", "1").oci_reference())

    assert read.sha256 == hashlib.sha256(jar).hexdigest() and read.self_consistent
    assert zot.proxied >= 5
    async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{zot.url}/v2/") as response:
        assert response.status == 401  # the real registry's answer, passed through
        assert json.loads(await response.read())["errors"][0]["code"] == "UNAUTHORIZED"
