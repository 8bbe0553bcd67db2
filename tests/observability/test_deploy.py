"""The example Prometheus and Grafana configuration loads as shipped, and the docs list what exists."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tests.observability.conftest import REPO, Promtool, load_yaml, rule_files
from verifier.observability.rules import VERIFIER_JOB, ZOT_JOB

PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana" / "provisioning"


def test_prometheus_config_passes_promtool_and_loads_every_rule_file(promtool: Promtool) -> None:
    # rule_files are relative to the config file, so checking it in place checks the committed rules.
    result = promtool.run("check", "config", PROMETHEUS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    match = re.search(r"SUCCESS: (\d+) rule files found", output)
    assert match and int(match.group(1)) == len(rule_files()), output


def test_prometheus_scrapes_the_sidecar_and_zot_under_the_jobs_the_alerts_expect() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    assert jobs[VERIFIER_JOB]["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    assert jobs[VERIFIER_JOB].get("metrics_path", "/metrics") == "/metrics"
    assert ZOT_JOB in jobs


def test_grafana_provisioning_defines_a_prometheus_datasource_and_a_dashboard_folder() -> None:
    datasources = load_yaml(GRAFANA / "datasources" / "prometheus.yaml")["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    assert datasources[0]["isDefault"] is True
    providers = load_yaml(GRAFANA / "dashboards" / "parity-verifier.yaml")["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    assert providers[0]["options"]["path"].startswith("/")
    docs = (REPO / "docs" / "observability.md").read_text(encoding="utf-8")
    assert providers[0]["options"]["path"] in docs, "docs must say where to mount dashboards/"


def test_docs_list_every_dashboard_and_alert(
    dashboards: dict[str, dict[str, Any]], alert_rules: Sequence[dict[str, Any]],
) -> None:
    docs = (REPO / "docs" / "observability.md").read_text(encoding="utf-8")
    missing = [d["title"] for d in dashboards.values() if d["title"] not in docs]
    missing += [r["alert"] for r in alert_rules if r["alert"] not in docs]
    assert not missing, f"docs/observability.md does not mention {missing}"
