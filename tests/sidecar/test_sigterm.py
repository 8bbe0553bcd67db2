"""`parity-verifier run` as a real process: SIGTERM while a large JAR is being checked."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Stores
from tests.sidecar.conftest import row, write_inventory
from tests.support.proxy import CountingProxy
from verifier.ledger import SqliteLedger
from verifier.model import Outcome

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def wal_size(ledger: Path) -> int:
    wal = Path(f"{ledger}-wal")
    return wal.stat().st_size if wal.exists() else 0


def integrity(ledger: Path) -> str:
    with sqlite3.connect(ledger) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


async def test_sigterm_mid_check_lets_it_finish_records_no_half_result_and_exits_0(
    stores: Stores, proxy: CountingProxy, inventory_file: Path, sidecar_config: dict[str, Any], tmp_path: Path,
) -> None:
    big, jar = stores.dual_write("monolith", "7.0.0", size=16 * MIB)
    small, _ = stores.dual_write("monolith", "6.0.0")
    now = dt.datetime.now(dt.UTC)
    write_inventory(inventory_file, [row(big, now), row(small, now - dt.timedelta(days=1))])  # big first
    sidecar_config["schedule"].update(concurrency=1, max_bytes_per_second=6 * MIB)  # a check of ~2.5s
    config = tmp_path / "parity.yaml"
    config.write_text(json.dumps(sidecar_config))
    base = f"http://{sidecar_config['server']['listen']}"

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "verifier", "run", "-c", str(config), cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        big_blob = None
        while big_blob is None:  # the large JAR's blob is streaming
            assert process.returncode is None, "the sidecar exited early"
            assert time.monotonic() < deadline, "the large JAR's check never reached the registry"
            big_blob = next((b for b in proxy.blobs() if "monolith" in b.path), None)
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http, http.get(base + "/status.json") as response:
            # the byte budget paces the 16 MiB read over ~2.5s: SIGTERM arrives while it is in flight
            assert (await response.json())["coverage"]["in_flight"] == 1
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 25)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    logs = err.decode()
    assert process.returncode == 0, logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "stopping: no new checks; 1 in flight" in messages and messages[-1] == "stopped cleanly"
    assert stores.registry.password not in logs

    assert big_blob.bytes == jar.stat().st_size, "the in-flight check was let finish"
    assert [m for m in proxy.manifests() if "monolith" in m] == [f"{stores.repository(big)}:v7.0.0"], \
        "no new check started after SIGTERM"

    ledger_path = Path(sidecar_config["ledger"]["path"])
    assert wal_size(ledger_path) == 0, "the ledger was closed cleanly (WAL checkpointed)"
    assert integrity(ledger_path) == "ok"
    async with SqliteLedger.open(ledger_path) as ledger:
        history = await ledger.history(big)
        assert len(history) == 1
        check = history[0]
        assert check.outcome is Outcome.MATCH
        assert check.filesystem["size"] == check.oci["size"] == jar.stat().st_size
        assert check.filesystem["sha256"] == check.oci["sha256"] is not None
        assert await ledger.history(small) == []
        states = await ledger.latest()
        assert states[big].outcome is Outcome.MATCH and states[small].outcome is None


async def test_run_with_its_port_taken_exits_3_with_one_line(sidecar_config: dict[str, Any], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        sidecar_config["server"]["listen"] = listen
        config = tmp_path / "parity.yaml"
        config.write_text(json.dumps(sidecar_config))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "verifier", "run", "-c", str(config), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 3
    text = err.decode()
    assert "Traceback" not in text
    assert f"parity-verifier: cannot run: server.listen {listen}: cannot listen" in text
    ledger_path = Path(sidecar_config["ledger"]["path"])
    async with SqliteLedger.open(ledger_path) as ledger:  # the ledger it opened was closed cleanly
        assert await ledger.latest() == {}
