"""Alert and recording rules: valid for Prometheus, unit-tested with promtool, every alert documented."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest

from tests.observability.conftest import ALERTS, Promtool, load_yaml, rule_files, rule_test_files
from tests.observability.promql import duration_seconds
from verifier.observability.rules import RUNBOOK_BASE_URL

SEVERITIES = {"critical", "warning"}


def test_every_rule_file_passes_promtool_check_rules(promtool: Promtool) -> None:
    files = rule_files()
    assert len(files) >= 4, files
    result = promtool.run("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_promtool_unit_tests_pass(promtool: Promtool) -> None:
    files = rule_test_files()
    assert files, "no promtool tests in alerts/tests/"
    result = promtool.run("test", "rules", *files, cwd=ALERTS / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_load_only_existing_rule_files() -> None:
    for path in rule_test_files():
        loaded = load_yaml(path)["rule_files"]
        assert loaded, path
        for name in loaded:
            assert (path.parent / name).resolve().is_file(), f"{path.name} loads missing {name}"


def _cases() -> dict[str, list[tuple[float, list[dict[str, Any]]]]]:
    """alertname → [(eval_time in seconds, expected alerts)] over every promtool test."""
    cases: dict[str, list[tuple[float, list[dict[str, Any]]]]] = defaultdict(list)
    for path in rule_test_files():
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                cases[case["alertname"]].append((duration_seconds(case["eval_time"]), case.get("exp_alerts") or []))
    return cases


def test_every_alert_has_a_firing_and_a_silent_case(alert_rules: Sequence[dict[str, Any]]) -> None:
    cases = _cases()
    problems = []
    for rule in alert_rules:
        name, pending = rule["alert"], duration_seconds(rule.get("for", "0s"))
        firing = [alerts for _, alerts in cases[name] if alerts]
        # A silent case must come after `for` has elapsed, else it only shows the alert still pending.
        silent = [t for t, alerts in cases[name] if not alerts and t > pending]
        if not firing:
            problems.append(f"{name}: no promtool case where it fires")
        if not silent:
            problems.append(f"{name}: no promtool case where it stays silent after for: {rule.get('for')}")
        for alerts in firing:
            for alert in alerts:
                if alert.get("exp_labels", {}).get("severity") != rule["labels"]["severity"]:
                    problems.append(f"{name}: a firing case does not check the severity label")
                if set(alert.get("exp_annotations", {})) != {"summary", "description", "runbook_url"}:
                    problems.append(f"{name}: a firing case does not check all annotations")
    unknown = set(cases) - {r["alert"] for r in alert_rules}
    assert not unknown, f"promtool cases for alerts that do not exist: {sorted(unknown)}"
    assert not problems, "\n".join(problems)


def test_alert_names_are_unique(alert_rules: Sequence[dict[str, Any]]) -> None:
    names = [r["alert"] for r in alert_rules]
    assert len(names) == len(set(names))


def test_every_alert_has_severity_summary_description_and_runbook(alert_rules: Sequence[dict[str, Any]]) -> None:
    for rule in alert_rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), rule["alert"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE_URL}#{rule['alert'].lower()}", rule["alert"]


def test_a_mismatch_pages_at_once(alert_rules: Sequence[dict[str, Any]]) -> None:
    mismatch = next(r for r in alert_rules if r["alert"] == "ArtifactParityMismatch")
    assert mismatch["labels"]["severity"] == "critical"
    assert duration_seconds(mismatch["for"]) == 0


def _github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_runbook_url_points_at_a_section_of_alerts_readme(alert_rules: Sequence[dict[str, Any]]) -> None:
    readme = (ALERTS / "README.md").read_text(encoding="utf-8")
    anchors = _github_anchors(readme)
    missing = [r["alert"] for r in alert_rules if r["annotations"]["runbook_url"].split("#", 1)[1] not in anchors]
    assert not missing, f"alerts/README.md has no section for {missing}"


def test_alerts_readme_documents_every_recording_rule(recording_rules: Sequence[dict[str, Any]]) -> None:
    readme = (ALERTS / "README.md").read_text(encoding="utf-8")
    missing = [r["record"] for r in recording_rules if f"`{r['record']}`" not in readme]
    assert not missing, f"alerts/README.md does not list {missing}"


@pytest.mark.parametrize("broken", ["missing_label", "wrong_annotation"])
def test_promtool_unit_tests_catch_a_broken_alert(promtool: Promtool, tmp_path: Any, broken: str) -> None:
    """The unit tests are not vacuous: the same tests fail against a subtly broken rule file."""
    for path in rule_files():
        text = path.read_text(encoding="utf-8")
        if path.name == "parity.yaml":
            if broken == "missing_label":  # a typo in a label value: the alert never fires
                text = text.replace('state="missing_oci"', 'state="mising_oci"')
            else:
                text = text.replace("are missing in the registry", "are missing")
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    tests = tmp_path / "tests"
    tests.mkdir()
    test_file = ALERTS / "tests" / "parity_test.yaml"
    (tests / test_file.name).write_text(test_file.read_text(encoding="utf-8"), encoding="utf-8")
    result = promtool.run("test", "rules", tests / test_file.name, cwd=tests)
    assert result.returncode != 0
    assert "ArtifactParityMissingInRegistry" in result.stdout + result.stderr
