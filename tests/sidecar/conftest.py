"""The sidecar in-process against the real registry (through a counting proxy), queried over real HTTP.

`sidecar_config` gives a settings mapping for the test's own store, inventory file and ledger;
`start_sidecar(mapping)` runs `Service.run()` in a task on a free port and returns a `Sidecar` handle
that scrapes /metrics, reads /status.json, captures the JSON log lines, and stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stores
from tests.support.postgres import PostgresServer
from tests.support.proxy import CountingProxy
from tests.support.registry import RegistryServer, free_port
from verifier.config import settings_from_mapping
from verifier.logs import JsonFormatter
from verifier.model import ArtifactCoordinates
from verifier.service import Service

UTC = dt.UTC


def row(c: ArtifactCoordinates, created_at: dt.datetime | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {**c.fields(), **extra}
    if created_at is not None:
        entry["created_at"] = created_at.isoformat()
    return entry


def write_inventory(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Atomically, so that a refresh never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(list(rows)), encoding="utf-8")
    tmp.replace(path)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


class LogCapture(logging.Handler):
    """The verifier's log records as the JSON lines `logging.format: json` writes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Sidecar:
    service: Service
    task: asyncio.Task[int]
    base: str
    http: aiohttp.ClientSession
    logs: LogCapture
    settings_map: dict[str, Any] = field(default_factory=dict)

    async def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
        async with self.http.get(self.base + path, headers=headers, allow_redirects=False) as response:
            return response.status, dict(response.headers), await response.text()

    async def metrics(self) -> Samples:
        status, _, text = await self.get("/metrics")
        assert status == 200, text
        return parse_samples(text)

    async def metric(self, name: str, **labels: str) -> float | None:
        return value(await self.metrics(), name, **labels)

    async def status(self) -> dict[str, Any]:
        status, _, text = await self.get("/status.json")
        assert status == 200, text
        return json.loads(text)

    async def gate(self) -> dict[str, Any]:
        status, _, text = await self.get("/gate")
        assert status == 200, text
        return json.loads(text)

    async def wait_for(self, probe: Callable[[], Awaitable[Any]], what: str, within: float = 10.0) -> Any:
        """Poll `probe` until it returns something truthy; fail naming `what` (and the service's state)."""
        deadline = time.monotonic() + within
        last: Any = None
        while time.monotonic() < deadline:
            if self.task.done():
                raise AssertionError(f"the service stopped while waiting for {what}: {self.task.result()!r}")
            last = await probe()
            if last:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {within}s waiting for {what}; last {last!r}; "
                             f"status {json.dumps(await self.status())[:1500]}")

    async def stop(self) -> int:
        self.service.stop()
        return await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def proxy(registry: RegistryServer) -> AsyncIterator[CountingProxy]:
    async with CountingProxy(registry.url) as p:
        yield p


@pytest.fixture
def inventory_file(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.json"
    write_inventory(path, [])
    return path


@pytest.fixture
def sidecar_config(stores: Stores, tmp_path: Path, proxy: CountingProxy, inventory_file: Path) -> dict[str, Any]:
    secret = tmp_path / "registry-password"
    secret.write_text(stores.registry.password + "\n")
    return {
        "inventory": {"source": "file", "path": str(inventory_file)},
        "filesystem": {"root": str(stores.root)},
        "registry": {"url": proxy.url, "username": stores.registry.username, "password_file": str(secret),
                     "timeout_seconds": 10, "probe_interval": "1s"},
        "ledger": {"path": str(tmp_path / "ledger" / "parity.sqlite")},
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "schedule": {"inventory_refresh": "1s", "coverage_window": "1h", "concurrency": 2,
                     "retry_after": "1m", "retry_max": "10m",
                     "settle_time": "0s"},  # test_settle.py covers the grace given to young versions
        "logging": {"format": "json"},
    }


@pytest.fixture
async def start_sidecar(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[Sidecar]]]:
    started: list[Sidecar] = []
    verifier_log = logging.getLogger("verifier")
    old_level = verifier_log.level
    verifier_log.setLevel(logging.INFO)
    http = aiohttp.ClientSession(trust_env=False)

    async def start(mapping: dict[str, Any]) -> Sidecar:
        settings = settings_from_mapping(json.loads(json.dumps(mapping)), base_dir=tmp_path)
        capture = LogCapture()
        verifier_log.addHandler(capture)
        service = Service(settings)
        task = asyncio.create_task(service.run(install_signal_handlers=False), name="sidecar under test")
        sidecar = Sidecar(service, task, f"http://{settings.server.listen}", http, capture, mapping)
        started.append(sidecar)
        deadline = time.monotonic() + 10
        while True:  # the server is up
            if task.done():
                task.result()
                raise AssertionError("the service returned before serving")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(sidecar.base + "/healthz") as response:
                    if response.status == 200:
                        break
            assert time.monotonic() < deadline, "the sidecar did not start serving within 10s"
            await asyncio.sleep(0.05)
        return sidecar

    try:
        yield start
    finally:
        for sidecar in started:
            if not sidecar.task.done():
                sidecar.service.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sidecar.task, 30)
            verifier_log.removeHandler(sidecar.logs)
        verifier_log.setLevel(old_level)
        await http.close()



@dataclass
class AppDatabase:
    """A database of the test's own with the platform's `app_versions` table, read by a login role."""

    admin_dsn: str
    dsn: str  # the sidecar's: role `reader` with a password (a secret that must never show)
    role: str
    password: str

    async def execute(self, sql: str, *args: Any) -> str:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            return await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def add(self, c: ArtifactCoordinates, created_at: dt.datetime | None = None) -> None:
        await self.execute(
            "INSERT INTO app_versions (tenant_id, app_id, version, created_at) VALUES ($1, $2, $3, $4)",
            c.tenant, c.app, c.version, created_at or dt.datetime.now(UTC))

    async def remove(self, c: ArtifactCoordinates) -> None:
        await self.execute("DELETE FROM app_versions WHERE tenant_id = $1 AND app_id = $2 AND version = $3",
                           c.tenant, c.app, c.version)

    async def allow_login(self, allowed: bool) -> None:
        await self.execute(f'ALTER ROLE "{self.role}" {"LOGIN" if allowed else "NOLOGIN"}')


@pytest.fixture
async def app_db(postgres: PostgresServer, request: pytest.FixtureRequest) -> AppDatabase:
    name = "sidecar_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    role = f"r_{name}"[:60]
    password = "inv-" + secrets.token_hex(8)
    admin = await asyncpg.connect(postgres.dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    finally:
        await admin.close()
    conn = await asyncpg.connect(postgres.dsn(name))
    try:
        await conn.execute("""
            CREATE TABLE app_versions (
                tenant_id text NOT NULL, app_id text NOT NULL, version text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, app_id, version))""")
        await conn.execute(f'GRANT SELECT ON app_versions TO "{role}"')
    finally:
        await conn.close()
    return AppDatabase(postgres.dsn(name), f"postgresql://{role}:{password}@127.0.0.1:{postgres.port}/{name}",
                       role, password)
