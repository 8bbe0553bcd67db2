"""Session fixtures start the real registry and PostgreSQL on 127.0.0.1 once; each test gets its own names."""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.jars import build_jar
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.registry import RegistryServer, running_registry
from verifier.model import ArtifactCoordinates, InventoryItem
from verifier.parity import ParityChecker
from verifier.stores.filesystem import FilesystemStore
from verifier.stores.oci import Credentials, OciStore, RegistryTransport

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with running_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@dataclass
class Stores:
    """A filesystem store of the test's own and the shared registry, with ways to put JARs in both."""

    root: Path
    registry: RegistryServer
    tenant: str
    workdir: Path

    def coordinates(self, app: str, version: str = "1.0.0") -> ArtifactCoordinates:
        return ArtifactCoordinates(self.tenant, app, version)

    def file_path(self, c: ArtifactCoordinates) -> Path:
        return self.root / c.tenant / c.app / c.version / "app.jar"

    def jar(self, name: str, size: int = 30_000, seed: int | None = None) -> Path:
        return build_jar(self.workdir / name, size, seed=seed if seed is not None else next(_counter))

    def put_file(self, c: ArtifactCoordinates, jar: Path) -> Path:
        target = self.file_path(c)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jar, target)
        return target

    def push(self, c: ArtifactCoordinates, jar: Path) -> None:
        self.registry.push_jar_with_oras(f"{c.tenant}/{c.app}", f"v{c.version}", jar)

    def dual_write(self, app: str, version: str = "1.0.0", size: int = 30_000) -> tuple[ArtifactCoordinates, Path]:
        """What the platform's upload path does: the same JAR into both stores."""
        c = self.coordinates(app, version)
        jar = self.jar(f"{app}-{version}.jar", size)
        self.put_file(c, jar)
        self.push(c, jar)
        return c, jar

    def repository(self, c: ArtifactCoordinates) -> str:
        return f"{c.tenant}/{c.app}"


@pytest.fixture
def stores(registry: RegistryServer, tmp_path: Path, request: pytest.FixtureRequest) -> Stores:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    root = tmp_path / "store"
    root.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    return Stores(root, registry, f"t{next(_counter)}-{slug}", work)


@pytest.fixture
async def transport(registry: RegistryServer) -> AsyncIterator[RegistryTransport]:
    async with RegistryTransport(registry.url, credentials=Credentials(registry.username, registry.password),
                                 timeout_seconds=10) as client:
        yield client


@pytest.fixture
def checker(stores: Stores, transport: RegistryTransport) -> ParityChecker:
    return ParityChecker(FilesystemStore(stores.root, "{tenant}/{app}/{version}/app.jar"), OciStore(transport))


def item(c: ArtifactCoordinates, **kwargs: object) -> InventoryItem:
    return InventoryItem(c, **kwargs)  # type: ignore[arg-type]
