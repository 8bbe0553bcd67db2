"""YAML + environment → frozen, validated settings. Every problem names its key and the file.

``${VAR}`` is substituted in string values after YAML parsing (an unset variable is an error naming
it); ``…_file`` keys read a secret from a file and strip one trailing newline; relative paths resolve
against the config file's folder; durations are ``<int>s|m|h|d``. Unknown keys are errors.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


MAX_DURATION = dt.timedelta(days=3650)


def parse_duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = int(match.group(1)) * _UNITS[match.group(2)]
            if seconds > MAX_DURATION.total_seconds():
                raise ValueError(f"{value.strip()} is longer than ten years")
            return dt.timedelta(seconds=seconds)
    raise ValueError(f"expected a duration like 30s, 5m, 24h or 7d, got {value!r}")


def _positive(value: dt.timedelta) -> dt.timedelta:
    if value <= dt.timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[dt.timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class InventorySettings(_Section):
    source: Literal["postgres", "filesystem", "file"]
    dsn: SecretStr | None = None
    dsn_file: Path | None = None
    query: str = "SELECT tenant_id AS tenant, app_id AS app, version, created_at FROM app_versions"
    path: Path | None = None
    timeout_seconds: PositiveSeconds = 30.0

    @model_validator(mode="after")
    def _needs(self) -> InventorySettings:
        if self.source == "postgres" and self.dsn is None:
            raise ValueError("inventory.dsn (or inventory.dsn_file) is required when inventory.source is postgres")
        if self.source == "file" and self.path is None:
            raise ValueError("inventory.path is required when inventory.source is file")
        return self


class FilesystemSettings(_Section):
    root: Path
    path: str = "{tenant}/{app}/{version}/app.jar"
    timeout_seconds: PositiveSeconds = 300.0

    @field_validator("path")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template(value, "filesystem.path")


class RegistrySettings(_Section):
    url: str
    repository: str = "{tenant}/{app}"
    tag: str = "v{version}"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    timeout_seconds: PositiveSeconds = 30.0
    probe_interval: PositiveDuration = dt.timedelta(seconds=30)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username or parts.password or "@" in value:
            raise ValueError("must not carry credentials; use registry.username and registry.password_file")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host[:port], got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("repository", "tag")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value, "registry template")

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load {value} as a PEM CA bundle: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
        return value

    @model_validator(mode="after")
    def _auth(self) -> RegistrySettings:
        if self.password is not None and self.username is None:
            raise ValueError("registry.username is required when a password is given")
        return self


class LedgerSettings(_Section):
    path: Path = Path("parity-ledger.sqlite")
    dsn: SecretStr | None = None


class ServerSettings(_Section):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ScheduleSettings(_Section):
    inventory_refresh: PositiveDuration = dt.timedelta(seconds=60)
    coverage_window: PositiveDuration = dt.timedelta(hours=24)
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    max_bytes_per_second: Annotated[float, Field(ge=0)] = 0
    max_requests_per_second: Annotated[float, Field(ge=0)] = 0
    retry_after: PositiveDuration = dt.timedelta(minutes=1)  # first re-check of a non-match
    retry_max: PositiveDuration = dt.timedelta(hours=1)  # back-off ceiling
    # A version younger than this (from created_at, else first seen) that is missing from a store is
    # checked again later instead of being recorded: the dual-write may still be uploading it.
    settle_time: Duration = dt.timedelta(minutes=2)
    shutdown_grace: Duration = dt.timedelta(seconds=20)  # in-flight checks may finish within this on SIGTERM


    @model_validator(mode="after")
    def _retry_order(self) -> ScheduleSettings:
        if self.retry_after > self.retry_max:
            raise ValueError("schedule.retry_after must not be longer than schedule.retry_max")
        return self


class MetricsSettings(_Section):
    tenant_label: bool = True
    max_tenants: Annotated[int, Field(ge=1)] = 100


class GateSettings(_Section):
    window: PositiveDuration = dt.timedelta(days=7)
    max_registry_error_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_registry_p99_seconds: Annotated[float, Field(gt=0)] = 5.0


class ZotSettings(_Section):
    scan_refresh: PositiveDuration = dt.timedelta(minutes=10)
    cosign_public_key: Path | None = None
    require_signatures: bool = False
    batch_size: Annotated[int, Field(ge=1, le=500)] = 50


class LoggingSettings(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(_Section):
    inventory: InventorySettings
    filesystem: FilesystemSettings
    registry: RegistrySettings
    ledger: LedgerSettings = LedgerSettings()
    server: ServerSettings = ServerSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    metrics: MetricsSettings = MetricsSettings()
    gate: GateSettings = GateSettings()
    zot: ZotSettings = ZotSettings()
    logging: LoggingSettings = LoggingSettings()
    source_file: Path | None = Field(default=None, exclude=True)


_FIELDS = {"tenant", "app", "version"}


def _check_template(value: str, where: str) -> str:
    names = set(re.findall(r"\{([^{}]*)\}", value))
    unknown = names - _FIELDS
    if unknown:
        raise ValueError(f"{where} may use only {{tenant}}, {{app}}, {{version}}; found {sorted(unknown)}")
    return value


# --- loading -----------------------------------------------------------------------------------------

_PATH_KEYS = {
    ("inventory", "path"), ("inventory", "dsn_file"), ("filesystem", "root"), ("registry", "password_file"),
    ("registry", "ca_file"), ("ledger", "path"), ("zot", "cosign_public_key"),
}
_SECRET_FILES = {("registry", "password_file"): "password", ("inventory", "dsn_file"): "dsn"}


def _substitute(node: Any, key: str, problems: list[str], name: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, f"{key}.{k}" if key else str(k), problems, name) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{key}[{i}]", problems, name) for i, v in enumerate(node)]
    if isinstance(node, str):
        def replace(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value is None:
                problems.append(f"{name}: {key}: environment variable {match.group(1)} is not set")
                return ""
            return value

        return _ENV.sub(replace, node)
    return node


def load_settings(path: str | os.PathLike[str]) -> Settings:
    source = Path(path)
    name = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{name}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return settings_from_mapping(raw, base_dir=source.resolve().parent, name=name)


def settings_from_mapping(raw: Any, *, base_dir: Path, name: str = "<config>") -> Settings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: the top level must be a mapping of sections")
    problems: list[str] = []
    data = _substitute(raw, "", problems, name)
    ledger = data.get("ledger")
    if ledger is None or (isinstance(ledger, dict) and "path" not in ledger and "dsn" not in ledger):
        data["ledger"] = {**(ledger or {}), "path": "parity-ledger.sqlite"}
    for section, key in _PATH_KEYS:
        sect = data.get(section)
        if isinstance(sect, dict) and isinstance(sect.get(key), str) and sect[key]:
            candidate = Path(sect[key]).expanduser()
            sect[key] = str(candidate if candidate.is_absolute() else base_dir / candidate)
    for (section, key), target in _SECRET_FILES.items():
        sect = data.get(section)
        if not isinstance(sect, dict) or sect.get(key) is None:
            continue
        if sect.get(target) is not None:
            problems.append(f"{name}: {section}.{key}: give either {section}.{target} or {section}.{key}, not both")
            continue
        try:
            secret = Path(str(sect[key])).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{name}: {section}.{key}: cannot read {sect[key]}: {exc.strerror}")
            sect[target] = ""  # reported above; no second "required" message for the same secret
            continue
        sect[target] = secret.removesuffix("\n")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        unset = {p.split(": ")[1] for p in problems if "environment variable" in p}
        problems.extend(f"{name}: {_describe(err)}" for err in exc.errors()
                        if ".".join(str(part) for part in err["loc"]) not in unset)
    if problems:
        raise ConfigError(problems)
    return settings.model_copy(update={"source_file": Path(name)})


def _suggest(loc: tuple[Any, ...]) -> str:
    """`registry.pasword` → ` (did you mean registry.password?)`."""
    model: Any = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    if not hasattr(model, "model_fields"):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), [k for k in model.model_fields if k != "source_file"], n=1)
    prefix = ".".join(str(p) for p in loc[:-1])
    return f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key{_suggest(err['loc'])}"
    if kind == "missing":
        return f"{loc}: required key is missing"
    message = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind == "model_type" or kind == "dict_type":
        message = "expected a mapping"
    got = err.get("input")
    suffix = "" if kind in ("value_error",) or isinstance(got, dict) or "password" in loc or "dsn" in loc \
        else f" (got {got!r})"
    if not loc or message.startswith(loc + "."):
        return message
    return f"{loc}: {message}{suffix}"
