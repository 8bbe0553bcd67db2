"""Fixtures for the dashboards and alert rules: the sidecar's exposition, promtool, the rule files."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from verifier.config import settings_from_mapping
from verifier.server import create_app
from verifier.service import Service

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "alerts"
DASHBOARDS = REPO / "dashboards"


@pytest.fixture(scope="session")
async def metrics_exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What a Prometheus scrape of the sidecar's real /metrics endpoint (verifier.server) returns.

    The sidecar is built from a configuration but not started: per-tenant series exist once the
    inventory names a tenant, so one tenant is declared as an inventory refresh would.
    """
    workdir = tmp_path_factory.mktemp("exposition")
    settings = settings_from_mapping({
        "inventory": {"source": "file", "path": "versions.yaml"},
        "filesystem": {"root": "store"},
        "registry": {"url": "http://127.0.0.1:9"},
        "ledger": {"path": "ledger.sqlite"},
    }, base_dir=workdir)
    service = Service(settings)
    service.metrics.declare_tenants(["acme"])
    runner = web.AppRunner(create_app(service))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/metrics") as response:
                assert response.status == 200, await response.text()
                return await response.text()
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Promtool:
    path: str

    def run(self, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.path, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd,
        )


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    path = shutil.which("promtool")
    assert path, "promtool (Prometheus 2.x, Debian package `prometheus`) must be on PATH for these tests"
    return Promtool(path)


def rule_files() -> list[Path]:
    """The committed rule files Prometheus loads (alerts/*.yaml; tests live in alerts/tests/)."""
    return sorted(ALERTS.glob("*.yaml"))


def rule_test_files() -> list[Path]:
    return sorted((ALERTS / "tests").glob("*.yaml"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def rules() -> list[dict[str, Any]]:
    """Every rule of every committed rule file."""
    return [rule for path in rule_files() for group in load_yaml(path)["groups"] for rule in group["rules"]]


@pytest.fixture(scope="session")
def alert_rules(rules: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rules if "alert" in r]


@pytest.fixture(scope="session")
def recording_rules(rules: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rules if "record" in r]


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    """Committed dashboards by file stem."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that query data (rows only group them), including panels inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel."""
    return [(p["title"], t["expr"]) for p in data_panels(dashboard) for t in p.get("targets", [])]
