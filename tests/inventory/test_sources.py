"""Inventory sources: the platform's PostgreSQL (real server), a list file, and a walk of the store."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import asyncpg
import pytest

from tests.support.postgres import PostgresServer
from verifier.errors import SourceUnavailable
from verifier.inventory.filesystem import FilesystemInventory
from verifier.inventory.listfile import ListFileInventory
from verifier.inventory.postgres import PostgresInventory
from verifier.model import ArtifactCoordinates

QUERY = "SELECT tenant_id AS tenant, app_id AS app, version, created_at FROM app_versions"


@pytest.fixture
async def app_db(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A database of the test's own with the platform's `app_versions` table."""
    name = "inv_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:40]
    admin = await asyncpg.connect(postgres.dsn())
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = postgres.dsn(name)
    conn = await asyncpg.connect(dsn)
    await conn.execute("""
        CREATE TABLE app_versions (
            tenant_id text NOT NULL, app_id text NOT NULL, version text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(), jar_sha256 text, jar_size bigint,
            PRIMARY KEY (tenant_id, app_id, version))""")
    await conn.executemany(
        "INSERT INTO app_versions (tenant_id, app_id, version, created_at, jar_sha256, jar_size) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [("acme", "orders", "1.4.2", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "ab" * 32, 595165),
         ("acme", "orders", "1.5.0", dt.datetime(2026, 11, 20, tzinfo=dt.UTC), None, None),
         ("globex", "billing", "7", dt.datetime(2026, 10, 2, tzinfo=dt.UTC), None, None)])
    await conn.close()
    return dsn


async def test_postgres_inventory_reads_app_versions(app_db: str) -> None:
    items = await PostgresInventory(app_db, QUERY).load()
    assert [i.coordinates for i in items] == [
        ArtifactCoordinates("acme", "orders", "1.4.2"), ArtifactCoordinates("acme", "orders", "1.5.0"),
        ArtifactCoordinates("globex", "billing", "7")]
    assert items[0].created_at == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


async def test_postgres_rows_may_carry_the_platforms_digest(app_db: str) -> None:
    query = ("SELECT tenant_id AS tenant, app_id AS app, version, created_at, jar_sha256 AS sha256, "
             "jar_size AS size FROM app_versions ORDER BY created_at")
    items = await PostgresInventory(app_db, query).load()
    orders = next(i for i in items if i.coordinates.version == "1.4.2")
    assert (orders.sha256, orders.size) == ("ab" * 32, 595165)


async def test_postgres_unreachable_is_a_one_line_reason_without_the_password(postgres: PostgresServer) -> None:
    dsn = f"postgresql://postgres:topsecret@127.0.0.1:{postgres.port + 1}/nope"  # nothing listens there
    with pytest.raises(SourceUnavailable) as caught:
        await PostgresInventory(dsn, QUERY, timeout_seconds=5).load()
    assert "inventory database unreachable" in str(caught.value)
    assert "topsecret" not in str(caught.value)


async def test_postgres_query_missing_columns_names_the_row(app_db: str) -> None:
    with pytest.raises(SourceUnavailable, match=r"row 1: 'version' is missing"):
        await PostgresInventory(app_db, "SELECT tenant_id AS tenant, app_id AS app FROM app_versions").load()


async def test_postgres_bad_query(app_db: str) -> None:
    with pytest.raises(SourceUnavailable, match="inventory query failed: UndefinedTableError"):
        await PostgresInventory(app_db, "SELECT * FROM no_such_table").load()


async def test_list_file_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("- {tenant: acme, app: orders, version: '1.10', sha256: " + "ab" * 32 + "}\n"
                                     "- {tenant: acme, app: orders, version: '2.0', created_at: 2026-11-02T10:00:00Z}\n")
    items = await ListFileInventory(tmp_path / "v.yaml").load()
    assert [i.coordinates.version for i in items] == ["1.10", "2.0"]
    assert items[1].created_at == dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)
    (tmp_path / "v.json").write_text(json.dumps([{"tenant": "a", "app": "b", "version": "3", "size": 12}]))
    assert (await ListFileInventory(tmp_path / "v.json").load())[0].size == 12


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {tenant: acme, app: orders}\n", "entry 1: 'version' is missing"),
        ("- {tenant: acme, app: orders, version: 1.10}\n", "entry 1: 'version' must be a string (quote it"),
        ("- {tenant: a, app: b, version: '1', colour: red}\n", "entry 1: unknown keys ['colour']"),
        ("- {tenant: a, app: b, version: '1', created_at: yesterday}\n", "'created_at' is not an ISO 8601"),
        ("tenant: a\n", "expected a list of {tenant, app, version} entries"),
        ("- [unclosed\n", "not valid YAML or JSON"),
    ],
)
async def test_list_file_errors_name_the_entry(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "v.yaml").write_text(text)
    with pytest.raises(SourceUnavailable) as caught:
        await ListFileInventory(tmp_path / "v.yaml").load()
    assert message in str(caught.value) and "v.yaml" in str(caught.value)


async def test_filesystem_walk_finds_versions_by_template(tmp_path: Path) -> None:
    for rel in ("acme/orders/1.4.2/app.jar", "acme/orders/1.5.0/app.jar", "globex/billing/7/app.jar",
                "acme/orders/1.4.2/notes.txt", "acme/stray.jar", "x/y/z/w/app.jar"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"PK")
    items = await FilesystemInventory(tmp_path, "{tenant}/{app}/{version}/app.jar").load()
    assert sorted(str(i.coordinates) for i in items) == ["acme/orders@1.4.2", "acme/orders@1.5.0",
                                                         "globex/billing@7"]
    assert all(i.created_at is not None for i in items)  # the file's mtime: new versions first


async def test_filesystem_walk_with_a_flat_template(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme/orders-1.0.jar").write_bytes(b"PK")
    items = await FilesystemInventory(tmp_path, "{tenant}/{app}-{version}.jar").load()
    assert [str(i.coordinates) for i in items] == ["acme/orders@1.0"]


async def test_uuid_ids_and_numeric_sizes_from_the_database(app_db: str) -> None:
    import uuid

    tenant = uuid.UUID("6f1c2b9e-0000-4000-8000-000000000001")
    conn = await asyncpg.connect(app_db)
    await conn.execute("CREATE TABLE uuid_versions (tenant_id uuid, app_id text, version text, jar_size numeric)")
    await conn.execute("INSERT INTO uuid_versions VALUES ($1, 'orders', '1.0', 595165)", tenant)
    await conn.close()
    items = await PostgresInventory(
        app_db, "SELECT tenant_id AS tenant, app_id AS app, version, jar_size AS size FROM uuid_versions").load()
    assert items[0].coordinates.tenant == str(tenant) and items[0].size == 595165


async def test_a_malformed_dsn_is_refused_without_repeating_it(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        await PostgresInventory("postgresql://u:topsecret@127.0.0.1:notaport/db", QUERY, timeout_seconds=2).load()
    assert "not a valid PostgreSQL DSN" in str(caught.value) and "topsecret" not in str(caught.value)
