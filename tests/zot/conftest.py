"""One real registry and one Zot emulator in front of it per session; each test gets its own tenant.

The registry fixture has its own name (``zot_backing_registry``) so that it never clashes with a shared
``registry`` fixture. Pushes go to the real registry directly (synchronous helpers, no emulator in the
way); the code under test reads through the emulator, as it would read through Zot.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.cosign import CosignKey
from tests.support.registry import RegistryServer, running_registry
from tests.support.zot_emulator import ZotEmulator
from tests.zot.helpers import Apps, credentials
from verifier.metrics import Metrics
from verifier.stores.oci import RegistryTransport


@pytest.fixture(scope="session")
def zot_backing_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with running_registry(tmp_path_factory.mktemp("zot-backing")) as server:
        yield server


@pytest.fixture(scope="session")
async def zot_emulator(zot_backing_registry: RegistryServer) -> AsyncIterator[ZotEmulator]:
    async with ZotEmulator(zot_backing_registry.url) as emulator:
        yield emulator


@pytest.fixture
def zot(zot_emulator: ZotEmulator) -> Iterator[ZotEmulator]:
    """The session's emulator, configured as a freshly started Zot, and reset after the test."""
    zot_emulator.reset()
    yield zot_emulator
    zot_emulator.reset()


@pytest.fixture(scope="session")
def cosign_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[CosignKey, CosignKey]:
    """(ours, theirs): two independent ECDSA P-256 key pairs made by openssl."""
    directory = tmp_path_factory.mktemp("cosign")
    return CosignKey.generate(directory, "ours"), CosignKey.generate(directory, "theirs")


@pytest.fixture
async def zot_transport(zot: ZotEmulator, zot_backing_registry: RegistryServer) -> AsyncIterator[RegistryTransport]:
    async with RegistryTransport(zot.url, credentials=credentials(zot_backing_registry), timeout_seconds=10) as t:
        yield t


@pytest.fixture
async def plain_transport(zot_backing_registry: RegistryServer) -> AsyncIterator[RegistryTransport]:
    """The real distribution registry itself: no Zot extensions."""
    async with RegistryTransport(zot_backing_registry.url, credentials=credentials(zot_backing_registry),
                                 timeout_seconds=10) as t:
        yield t


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def apps(zot_backing_registry: RegistryServer, tmp_path: Path) -> Apps:
    return Apps(zot_backing_registry, f"t{uuid.uuid4().hex[:12]}", tmp_path)
