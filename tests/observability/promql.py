"""Just enough PromQL lexing for the consistency tests: metric names, label matchers, Grafana variables.

Not a parser: promtool checks that every expression parses; this only has to find names reliably in
expressions that do parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Grafana template variables: $var, ${var}, ${var:format}, [[var]].
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_TOKEN = re.compile(r"\d[\w.]*|[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "atan2", "inf", "nan", "Inf", "NaN",
})
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$")
GRAFANA_BUILTIN_DURATIONS = ("__rate_interval", "__interval", "__range")


def grafana_variables(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in GRAFANA_VARIABLE.finditer(expr)}


def substitute_grafana(expr: str) -> str:
    """A plain PromQL expression: built-in intervals become 5m, any other variable matches anything."""

    def repl(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        return "5m" if name in GRAFANA_BUILTIN_DURATIONS else ".*"

    return GRAFANA_VARIABLE.sub(repl, expr)


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (functions, keywords, labels and literals left out)."""
    s = GRAFANA_VARIABLE.sub("", expr)
    s = _STRING.sub('""', s)
    s = _MATCHERS.sub(" ", s)
    s = _RANGE.sub(" ", s)
    s = _LABEL_LIST.sub(" ", s)
    s = _OFFSET.sub(" ", s)
    names: set[str] = set()
    for m in _TOKEN.finditer(s):
        token = m.group()
        if token[0].isdigit() or token in _KEYWORDS:
            continue
        if s[m.end():].lstrip().startswith("("):  # a function or an aggregation
            continue
        names.add(token)
    return names


@dataclass(frozen=True)
class Matcher:
    metric: str
    label: str
    op: str
    value: str


def matchers(expr: str) -> list[Matcher]:
    """Label matchers of every `name{…}` selector, Grafana variables substituted."""
    s = substitute_grafana(expr)
    found = []
    for sel in _SELECTOR.finditer(s):
        for m in _MATCHER.finditer(sel.group(2)):
            found.append(Matcher(sel.group(1), m.group(1), m.group(2), m.group(3)))
    return found


def label_values_query(query: str) -> tuple[str, str] | None:
    """(selector, label) of a Grafana `label_values(selector, label)` variable query."""
    m = _LABEL_VALUES.match(query)
    return (m.group(1), m.group(2)) if m else None


def ranges(expr: str) -> list[str]:
    """Contents of every range or subquery bracket, e.g. ['$__rate_interval', '5m']."""
    s = _STRING.sub('""', expr)
    return [m.group()[1:-1] for m in _RANGE.finditer(s)]


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(text: str) -> float:
    """Prometheus duration ('1h30m', '0m', '15m') in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
