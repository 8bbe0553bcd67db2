"""`parity-verifier check` as a user runs it: a real subprocess, real registry, real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Stores
from tests.support.jars import flip_byte
from tests.support.postgres import PostgresServer
from tests.support.registry import free_port

REPORT_KEYS = {"tenant", "app", "version", "outcome", "wrong_side", "faults", "filesystem", "oci", "detail"}


def config(stores: Stores, tmp_path: Path, rows: list[dict] | None = None, *, password: str | None = None,
           url: str | None = None, inventory: dict | None = None) -> Path:
    (tmp_path / "pw").write_text((password if password is not None else stores.registry.password) + "\n")
    if inventory is None:
        (tmp_path / "versions.json").write_text(json.dumps(rows or []))
        inventory = {"source": "file", "path": "versions.json"}
    doc = {
        "inventory": inventory,
        "filesystem": {"root": str(stores.root)},
        "registry": {"url": url or stores.registry.url, "username": stores.registry.username,
                     "password_file": "pw", "timeout_seconds": 5},
        "ledger": {"path": "ledger.sqlite"},
    }
    path = tmp_path / "parity.yaml"
    path.write_text(json.dumps(doc))
    return path


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verifier", "check", "-c", str(path), *args],
                          capture_output=True, text=True, timeout=120)


def row(stores: Stores, app: str, version: str = "1.0.0", **extra: object) -> dict:
    return {"tenant": stores.tenant, "app": app, "version": version, **extra}


def test_json_report_has_the_contract_shape(stores: Stores, tmp_path: Path) -> None:
    stores.dual_write("orders", "1.4.2")
    stores.dual_write("billing", "2.0")
    flip_byte(stores.registry.blob_file(stores.registry.jar_layer_digest(f"{stores.tenant}/billing", "v2.0")))
    stores.put_file(stores.coordinates("gap", "1"), stores.jar("gap.jar"))
    done = run(config(stores, tmp_path, [row(stores, "orders", "1.4.2"), row(stores, "billing", "2.0"),
                                         row(stores, "gap", "1")]), "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"] == {"versions": 3, "match": 1, "mismatch": 1, "missing_filesystem": 0,
                                 "missing_oci": 1, "missing_both": 0, "error": 0}
    by_app = {r["app"]: r for r in report["results"]}
    for result in report["results"]:
        assert set(result) == REPORT_KEYS
        assert set(result["filesystem"]) == {"path", "size", "sha256"}
        assert set(result["oci"]) == {"reference", "manifest_digest", "layer_digest", "layer_size", "size", "sha256"}
    match = by_app["orders"]
    assert (match["outcome"], match["wrong_side"], match["faults"], match["detail"]) == ("match", None, [], None)
    assert match["filesystem"]["path"] == f"{stores.tenant}/orders/1.4.2/app.jar"
    assert match["oci"]["reference"] == f"{stores.tenant}/orders:v1.4.2"
    assert len(match["filesystem"]["sha256"]) == 64 and match["filesystem"]["sha256"] == match["oci"]["sha256"]
    bad = by_app["billing"]
    assert (bad["outcome"], bad["wrong_side"], bad["faults"]) == ("mismatch", "oci", ["oci_blob_digest_mismatch"])
    gap = by_app["gap"]
    assert gap["outcome"] == "missing_oci" and gap["oci"]["sha256"] is None and gap["oci"]["size"] is None


def test_text_report_summary_first_then_one_line_per_problem(stores: Stores, tmp_path: Path) -> None:
    stores.dual_write("orders")
    done = run(config(stores, tmp_path, [row(stores, "orders"), row(stores, "ghost")]))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2 versions: 1 match, 0 mismatch")
    assert lines[1].startswith("MISSING_BOTH") and f"{stores.tenant}/ghost 1.0.0" in lines[1]
    assert "neither store" in lines[2]


def test_all_match_exits_0_and_output_file_is_written_whole(stores: Stores, tmp_path: Path) -> None:
    stores.dual_write("a")
    out = tmp_path / "report.json"
    done = run(config(stores, tmp_path, [row(stores, "a")]), "--format", "json", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert json.loads(out.read_text())["summary"]["match"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_empty_inventory_exits_0_with_a_warning(stores: Stores, tmp_path: Path) -> None:
    done = run(config(stores, tmp_path, []))
    assert done.returncode == 0
    assert "inventory is empty" in done.stderr and "0 versions" in done.stdout


def test_hostile_row_is_an_error_and_the_rest_goes_on(stores: Stores, tmp_path: Path) -> None:
    stores.dual_write("fine")
    done = run(config(stores, tmp_path, [row(stores, "fine"), row(stores, "evil", path="../../../etc/passwd")]),
               "--format", "json")
    assert done.returncode == 1
    results = {r["app"]: r for r in json.loads(done.stdout)["results"]}
    assert results["fine"]["outcome"] == "match"
    assert results["evil"]["outcome"] == "error" and results["evil"]["faults"] == ["unsafe_path"]


def test_wrong_credentials_are_an_error_and_the_password_never_shows(stores: Stores, tmp_path: Path) -> None:
    stores.dual_write("locked")
    wrong = "wrong-Pa55word-xyzzy"
    done = run(config(stores, tmp_path, [row(stores, "locked")], password=wrong), "--format", "json")
    assert done.returncode == 1
    result = json.loads(done.stdout)["results"][0]
    assert result["outcome"] == "error" and result["faults"] == ["oci_unauthorized"]
    assert "authentication failed" in result["detail"]
    for text in (done.stdout, done.stderr, (tmp_path / "ledger.sqlite").read_bytes().decode("latin-1")):
        assert wrong not in text and stores.registry.password not in text


def test_registry_down_is_an_error_not_a_missing(stores: Stores, tmp_path: Path) -> None:
    stores.put_file(stores.coordinates("offline"), stores.jar("offline.jar"))
    done = run(config(stores, tmp_path, [row(stores, "offline")], url=f"http://127.0.0.1:{free_port()}"),
               "--format", "json")
    assert done.returncode == 1
    result = json.loads(done.stdout)["results"][0]
    assert result["outcome"] == "error" and result["faults"] == ["oci_unreachable"]
    assert result["filesystem"]["sha256"] is not None  # the filesystem side was still read


def test_unreachable_inventory_exits_3_with_one_line(stores: Stores, tmp_path: Path) -> None:
    path = config(stores, tmp_path, inventory={"source": "file", "path": "does-not-exist.yaml"})
    done = run(path)
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0 and "does-not-exist.yaml" in done.stderr
    assert "Traceback" not in done.stderr


async def test_postgres_inventory_end_to_end(stores: Stores, tmp_path: Path, postgres: PostgresServer) -> None:
    stores.dual_write("orders", "1.4.2")
    stores.dual_write("orders", "1.5.0")
    database = f"cli_{stores.tenant.replace('-', '_')[:40]}"
    admin = await asyncpg.connect(postgres.dsn())
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    conn = await asyncpg.connect(postgres.dsn(database))
    await conn.execute("CREATE TABLE app_versions (tenant_id text, app_id text, version text, "
                       "created_at timestamptz DEFAULT now())")
    await conn.executemany("INSERT INTO app_versions (tenant_id, app_id, version) VALUES ($1, $2, $3)",
                           [(stores.tenant, "orders", "1.4.2"), (stores.tenant, "orders", "1.5.0"),
                            (stores.tenant, "orders", "1.6.0")])
    await conn.close()
    (tmp_path / "dsn").write_text(postgres.dsn(database) + "\n")
    done = run(config(stores, tmp_path, inventory={"source": "postgres", "dsn_file": "dsn"}), "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["versions"] == 3 and report["summary"]["match"] == 2
    assert {r["version"]: r["outcome"] for r in report["results"]}["1.6.0"] == "missing_both"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_records_into_the_ledger_for_the_gate(stores: Stores, tmp_path: Path, fmt: str) -> None:
    stores.dual_write("gated")
    path = config(stores, tmp_path, [row(stores, "gated")])
    assert run(path).returncode == 0
    gate = subprocess.run([sys.executable, "-m", "verifier", "gate", "-c", str(path), "--format", fmt],
                          capture_output=True, text=True, timeout=60)
    # one fresh check is too little evidence for a 7-day window: never GO
    assert gate.returncode == 3, gate.stdout + gate.stderr
    if fmt == "json":
        verdict = json.loads(gate.stdout)
        assert verdict["verdict"] == "INCONCLUSIVE"
        assert {c["name"]: c["ok"] for c in verdict["conditions"]}["window_observed"] is False
    else:
        assert gate.stdout.startswith("INCONCLUSIVE") or "INCONCLUSIVE" in gate.stdout.splitlines()[0]
