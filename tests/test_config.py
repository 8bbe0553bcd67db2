"""Configuration: every invalid file is paired with the exact message a user sees; secrets never leak."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifier.config import load_settings, parse_duration
from verifier.errors import ConfigError

MINIMAL = """
inventory: {source: file, path: versions.yaml}
filesystem: {root: store}
registry: {url: "http://127.0.0.1:5000"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "parity.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return [p.replace(str(path), "parity.yaml") for p in caught.value.problems]


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.inventory.path == tmp_path / "versions.yaml"  # relative to the config's folder
    assert settings.filesystem.root == tmp_path / "store"
    assert settings.filesystem.path == "{tenant}/{app}/{version}/app.jar"
    assert (settings.registry.repository, settings.registry.tag) == ("{tenant}/{app}", "v{version}")
    assert settings.ledger.path == tmp_path / "parity-ledger.sqlite"
    assert settings.server.listen == "127.0.0.1:9464"
    assert settings.schedule.coverage_window == dt.timedelta(hours=24)
    assert settings.schedule.inventory_refresh == dt.timedelta(seconds=60)
    assert settings.gate.window == dt.timedelta(days=7)
    assert settings.gate.max_registry_error_ratio == 0.01
    assert settings.zot.scan_refresh == dt.timedelta(minutes=10)
    assert settings.metrics.max_tenants == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "registry_url: x\n", ["parity.yaml: registry_url: unknown key (did you mean registry?)"]),
        (MINIMAL.replace("registry: {", "registry: {pasword: x, "),
         ["parity.yaml: registry.pasword: unknown key (did you mean registry.password?)"]),
        ("filesystem: {root: s}\nregistry: {url: 'http://h'}\n", ["parity.yaml: inventory: required key is missing"]),
        (MINIMAL.replace('{url: "http://127.0.0.1:5000"}', "{}"), ["parity.yaml: registry.url: required key is missing"]),
        (MINIMAL + "schedule: {coverage_window: 24x}\n",
         ["parity.yaml: schedule.coverage_window: expected a duration like 30s, 5m, 24h or 7d, got '24x'"]),
        (MINIMAL + "schedule: {concurrency: lots}\n",
         ["parity.yaml: schedule.concurrency: Input should be a valid integer, unable to parse string as an "
          "integer (got 'lots')"]),
        (MINIMAL.replace("source: file, path: versions.yaml", "source: postgres"),
         ["parity.yaml: inventory.dsn (or inventory.dsn_file) is required when inventory.source is postgres"]),
        (MINIMAL.replace("source: file", "source: ldap"),
         ["parity.yaml: inventory.source: Input should be 'postgres', 'filesystem' or 'file' (got 'ldap')"]),
        (MINIMAL.replace("http://127.0.0.1:5000", "ftp://x"),
         ["parity.yaml: registry.url: expected http(s)://host[:port], got 'ftp://x'"]),
        (MINIMAL.replace("{root: store}", "{root: store, path: '{tenant}/{build}.jar'}"),
         ["parity.yaml: filesystem.path: filesystem.path may use only {tenant}, {app}, {version}; found ['build']"]),
        ("- just\n- a list\n", ["parity.yaml: the top level must be a mapping of sections"]),
        (MINIMAL + "schedule: {inventory_refresh: 0s}\n", ["parity.yaml: schedule.inventory_refresh: must be longer than 0s"]),
        (MINIMAL + "schedule: {retry_after: 2h, retry_max: 1h}\n",
         ["parity.yaml: schedule.retry_after must not be longer than schedule.retry_max"]),
        (MINIMAL + "gate: {window: 9999999999d}\n", ["parity.yaml: gate.window: 9999999999d is longer than ten years"]),
        (MINIMAL.replace("http://127.0.0.1:5000", "htps://parity:S3cr3t@zot:5000"),
         ["parity.yaml: registry.url: must not carry credentials; use registry.username and registry.password_file"]),
        (MINIMAL.replace('{url: "http://127.0.0.1:5000"}', '{url: "http://127.0.0.1:5000", ca_file: nope.pem}'),
         ["parity.yaml: registry.ca_file: cannot load {dir}/nope.pem as a PEM CA bundle: No such file or directory"]),
        ("inventory: [unclosed\n", ["parity.yaml: not valid YAML (line 2, column 1): expected ',' or ']', but got "
                                    "'<stream end>'"]),
    ],
    ids=["unknown-section", "unknown-key", "missing-section", "missing-url", "bad-duration", "wrong-type",
         "postgres-without-dsn", "unknown-source", "bad-url", "bad-template", "not-a-mapping", "zero-duration",
         "retry-order", "huge-duration", "credentials-in-a-bad-url", "missing-ca-file", "bad-yaml"],
)
def test_invalid_configuration_names_the_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == [e.replace("{dir}", str(tmp_path)) for e in expected]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "schedule: {coverage_window: 1y, concurrency: 0}\nbogus: 1\n")
    assert len(found) == 3
    assert any("schedule.coverage_window" in p for p in found)
    assert any("schedule.concurrency" in p for p in found)
    assert any("bogus: unknown key" in p for p in found)


def test_environment_substitution_and_unset_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_HOST", "zot.internal:5000")
    settings = load_settings(write(tmp_path, MINIMAL.replace("127.0.0.1:5000", "${REGISTRY_HOST}")))
    assert settings.registry.url == "http://zot.internal:5000"
    monkeypatch.delenv("REGISTRY_HOST")
    assert problems(tmp_path, MINIMAL.replace("127.0.0.1:5000", "${REGISTRY_HOST}")) == [
        "parity.yaml: registry.url: environment variable REGISTRY_HOST is not set"]


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-value\n")
    text = MINIMAL.replace('{url: "http://127.0.0.1:5000"}',
                           '{url: "http://127.0.0.1:5000", username: parity, password_file: pw}')
    settings = load_settings(write(tmp_path, text))
    assert settings.registry.password is not None
    assert settings.registry.password.get_secret_value() == "s3cret-value"  # one trailing newline stripped
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())


def test_password_and_password_file_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    text = MINIMAL.replace('{url: "http://127.0.0.1:5000"}',
                           '{url: "http://127.0.0.1:5000", username: u, password: y, password_file: pw}')
    assert problems(tmp_path, text) == [
        "parity.yaml: registry.password_file: give either registry.password or registry.password_file, not both"]


def test_credentials_in_the_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL.replace("http://127.0.0.1:5000", "http://user:hunter2@127.0.0.1:5000"))
    assert found == ["parity.yaml: registry.url: must not carry credentials; use registry.username and "
                     "registry.password_file"]
    assert "hunter2" not in " ".join(found)


def test_cli_exits_2_with_the_problem_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "schedule: {coverage_window: soon}\n")
    done = subprocess.run([sys.executable, "-m", "verifier", "check", "-c", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "schedule.coverage_window" in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_usage_error_exits_2() -> None:
    done = subprocess.run([sys.executable, "-m", "verifier", "check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--config" in done.stderr


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from("smhd"))
def test_durations_parse(n: int, unit: str) -> None:
    seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if seconds <= 3650 * 86400:
        assert parse_duration(f"{n}{unit}") == dt.timedelta(seconds=seconds)
    else:
        with pytest.raises(ValueError, match="longer than ten years"):
            parse_duration(f"{n}{unit}")


@given(st.text(max_size=8).filter(lambda s: not s.strip().rstrip("smhd").strip().isdigit()))
def test_non_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_shipped_example_configuration_is_valid(tmp_path: Path) -> None:
    """deploy/parity.example.yaml loads once its secret files exist."""
    import yaml

    from verifier.config import settings_from_mapping

    raw = yaml.safe_load((Path(__file__).parent.parent / "deploy/parity.example.yaml").read_text())
    for section, key in (("inventory", "dsn_file"), ("registry", "password_file"), ("zot", "cosign_public_key")):
        secret = tmp_path / key
        secret.write_text("postgresql://parity@db/platform\n" if key == "dsn_file" else "x\n")
        raw[section][key] = str(secret)
    settings = settings_from_mapping(raw, base_dir=tmp_path, name="parity.example.yaml")
    assert settings.inventory.source == "postgres" and settings.server.listen == "0.0.0.0:9464"
    assert settings.schedule.max_bytes_per_second == 50_000_000
