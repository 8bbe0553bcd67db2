"""The cutover gate: may the registry replace the filesystem store? GO, NO-GO or INCONCLUSIVE, with reasons.

Six named conditions (`GateCondition`), each with its measured value and threshold. A failing
condition either proves a problem (NO-GO: the stores disagreed, or the registry fails or is slow) or
only lacks evidence (INCONCLUSIVE: unverified or undecided versions, a window not observed in full,
stale coverage, no registry reads). NO-GO wins over INCONCLUSIVE; too little evidence is never GO.

Scope: the inventory versions when the inventory is at hand, else the versions the ledger knows and
has not seen disappear from the inventory. A mismatch recorded for a version that is no longer in
scope (deleted from the platform meanwhile) does not block, and the detail says how many were left out.

"window_observed" asks for evidence that begins at least `gate.window` ago and for no stretch inside
the window longer than `schedule.coverage_window` without any check: a sidecar that was down for two
of the seven days has not observed them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import Settings
from .ledger.base import FAILING_OUTCOMES, Ledger, QuietPeriod, RecordedCheck, VersionState, as_utc
from .metrics import Metrics
from .model import ArtifactCoordinates, GateCondition, InventoryItem, Outcome

Verdict = Literal["GO", "NO-GO", "INCONCLUSIVE"]
GO: Verdict = "GO"
NO_GO: Verdict = "NO-GO"
INCONCLUSIVE: Verdict = "INCONCLUSIVE"

EXIT_CODES: dict[str, int] = {GO: 0, NO_GO: 1, INCONCLUSIVE: 3}
UNVERIFIED = "unverified"  # the `outcome` of a blocking version never checked (as the `versions` gauge)
MAX_UNDECIDED_LISTED = 100  # error/unverified versions listed in blocking_versions (failing ones: all)
NAMED_IN_DETAIL = 3

_HEADLINES: dict[str, str] = {
    GO: "every cutover condition holds; the registry may replace the filesystem store",
    NO_GO: "do not cut over: the stores disagreed, or the registry fails or is too slow",
    INCONCLUSIVE: "not enough evidence yet to decide",
}

Unit = Literal["versions", "seconds", "ratio"]


@dataclass(frozen=True, slots=True)
class GateConditionResult:
    name: str
    ok: bool
    value: float | None
    threshold: float | None
    detail: str
    fails_as: Verdict = INCONCLUSIVE  # what this condition makes the verdict when it fails
    unit: Unit = "versions"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "value": _round(self.value),
                "threshold": _round(self.threshold), "detail": self.detail}

    def shown(self) -> dict[str, str]:
        """The measured value and threshold as a person reads them (`4m`, `8.33%`, `≤ 5s`)."""
        return {"measured": _show(self.value, self.unit), "limit": _threshold(self)}


@dataclass(frozen=True, slots=True)
class GateVerdict:
    verdict: Verdict
    conditions: list[GateConditionResult]
    blocking_versions: list[dict[str, Any]] = field(default_factory=list)
    evaluated_at: dt.datetime | None = None

    @property
    def ready(self) -> bool:
        return self.verdict == GO

    @property
    def exit_code(self) -> int:
        """`gate` CLI: 0 GO, 1 NO-GO, 3 INCONCLUSIVE."""
        return EXIT_CODES[self.verdict]

    def condition(self, name: GateCondition | str) -> GateConditionResult:
        return next(c for c in self.conditions if c.name == str(name))

    def as_dict(self) -> dict[str, Any]:
        """The `/gate` and `gate --format json` document (DESIGN.md contract)."""
        return {
            "verdict": self.verdict,
            "conditions": [c.as_dict() for c in self.conditions],
            "blocking_versions": [dict(v) for v in self.blocking_versions],
        }

    def render_text(self) -> str:
        lines = [f"{self.verdict}: {_HEADLINES[self.verdict]}"]
        if self.evaluated_at is not None:
            lines.append(f"  evaluated at {self.evaluated_at.isoformat(timespec='seconds')}")
        lines.append("")
        width = max(len(c.name) for c in self.conditions)
        for c in self.conditions:
            mark = "✓" if c.ok else "✗"
            measured = _show(c.value, c.unit)
            lines.append(f"{mark} {c.name:<{width}}  {measured} (threshold {_threshold(c)})")
            lines.append(f"  {'':<{width}}  {c.detail}")
        if self.blocking_versions:
            lines.append("")
            lines.append(f"Blocking versions ({len(self.blocking_versions)}):")
            for v in self.blocking_versions:
                when = v["checked_at"] or "never checked"
                faults = ", ".join(v["faults"]) or "-"
                lines.append(f"  {v['tenant']}/{v['app']} {v['version']}  {v['outcome']}  {when}  {faults}")
        return "\n".join(lines) + "\n"


def apply_to_metrics(verdict: GateVerdict, metrics: Metrics) -> None:
    """`artifact_parity_cutover_ready` and `artifact_parity_gate_condition{condition}`."""
    metrics.set_gate(verdict.ready, {c.name: c.ok for c in verdict.conditions})


# --- evaluation --------------------------------------------------------------------------------------


async def evaluate(
    ledger: Ledger, inventory: Sequence[InventoryItem] | None, settings: Settings, now: dt.datetime
) -> GateVerdict:
    now = as_utc(now)
    window = settings.gate.window
    coverage = settings.schedule.coverage_window
    since = now - window

    states = await ledger.latest()
    if inventory is None:
        scope = sorted((c for c, s in states.items() if s.known), key=_key)
        where = "the versions the ledger knows"
    else:
        scope = list(dict.fromkeys(item.coordinates for item in inventory))
        where = "the inventory"
    in_scope = set(scope)
    failures = await ledger.non_matches_since(since)
    stats = await ledger.registry_stats(since)
    started = await ledger.started_at()
    quiet = await ledger.quiet_period(since, now) if started is not None and started <= since else None

    scoped_failures = [f for f in failures if f.coordinates in in_scope]
    left_out = len(failures) - len(scoped_failures)
    latest = {c: states.get(c) for c in scope}

    conditions = [
        _latest_all_match(latest, where),
        _no_failures_in_window(scoped_failures, left_out, window),
        _window_observed(started, quiet, now, window, coverage),
        _coverage_complete(latest, now, coverage, where),
        _registry_error_ratio(stats.reads, stats.errors, window, settings.gate.max_registry_error_ratio),
        _registry_latency_p99(stats.p99_seconds, stats.reads - stats.errors, window,
                              settings.gate.max_registry_p99_seconds),
    ]
    failing = [c for c in conditions if not c.ok]
    verdict: Verdict = GO
    if any(c.fails_as == NO_GO for c in failing):
        verdict = NO_GO
    elif failing:
        verdict = INCONCLUSIVE
    return GateVerdict(verdict, conditions, _blocking(scoped_failures, latest), evaluated_at=now)


def _latest_all_match(latest: dict[ArtifactCoordinates, VersionState | None], where: str) -> GateConditionResult:
    name = GateCondition.LATEST_ALL_MATCH.value
    total = len(latest)
    counts = Counter(s.outcome.value if s and s.outcome else UNVERIFIED for s in latest.values())
    not_matching = total - counts[Outcome.MATCH.value]
    if total == 0:
        return GateConditionResult(name, False, 0, 0, f"no versions to judge: {where} lists none")
    if not_matching == 0:
        return GateConditionResult(name, True, 0, 0, f"the latest check of all {total} versions is a match")
    order = [o.value for o in Outcome if o is not Outcome.MATCH] + [UNVERIFIED]
    parts = ", ".join(f"{counts[o]} {o}" for o in order if counts[o])
    proven = any(counts[o.value] for o in FAILING_OUTCOMES)
    return GateConditionResult(
        name, False, not_matching, 0,
        f"{counts[Outcome.MATCH.value]} of {total} versions match; latest outcome of the others: {parts}",
        fails_as=NO_GO if proven else INCONCLUSIVE,
    )


def _no_failures_in_window(failures: list[RecordedCheck], left_out: int, window: dt.timedelta) -> GateConditionResult:
    name = GateCondition.NO_FAILURES_IN_WINDOW.value
    note = (f"; {left_out} more in versions no longer in scope, not counted" if left_out else "")
    if not failures:
        return GateConditionResult(
            name, True, 0, 0, f"no mismatch or missing outcome in the last {_duration(window)}{note}",
            fails_as=NO_GO,
        )
    named = ", ".join(f"{f.coordinates} ({f.outcome.value} at {f.checked_at.isoformat(timespec='seconds')})"
                      for f in failures[:NAMED_IN_DETAIL])
    more = f" and {len(failures) - NAMED_IN_DETAIL} more" if len(failures) > NAMED_IN_DETAIL else ""
    return GateConditionResult(
        name, False, len(failures), 0,
        f"{_n(len(failures), 'version')} had a mismatch or missing outcome in the last {_duration(window)}: "
        f"{named}{more}{note}",
        fails_as=NO_GO,
    )


def _window_observed(
    started: dt.datetime | None, quiet: QuietPeriod | None, now: dt.datetime, window: dt.timedelta, coverage: dt.timedelta
) -> GateConditionResult:
    name = GateCondition.WINDOW_OBSERVED.value
    limit = window.total_seconds()
    if started is None:
        return GateConditionResult(name, False, 0, limit, f"nothing recorded yet: the gate needs "
                                   f"{_duration(window)} of checks", unit="seconds")
    span = now - started
    if span < window:
        return GateConditionResult(
            name, False, span.total_seconds(), limit,
            f"evidence covers {_duration(span)} of the {_duration(window)} window (first check "
            f"{_iso(started)}); the window is complete at {_iso(started + window)}",
            unit="seconds",
        )
    if quiet is not None and quiet.length > coverage:
        return GateConditionResult(
            name, False, span.total_seconds(), limit,
            f"nothing was checked from {_iso(quiet.start)} to {_iso(quiet.end)} ({_duration(quiet.length)}, "
            f"longer than the {_duration(coverage)} coverage window): that part of the window was not observed",
            unit="seconds",
        )
    return GateConditionResult(
        name, True, span.total_seconds(), limit,
        f"evidence since {_iso(started)} ({_duration(span)}), no gap longer than {_duration(coverage)}",
        unit="seconds",
    )


def _coverage_complete(
    latest: dict[ArtifactCoordinates, VersionState | None], now: dt.datetime, coverage: dt.timedelta, where: str
) -> GateConditionResult:
    name = GateCondition.COVERAGE_COMPLETE.value
    total = len(latest)
    if total == 0:
        return GateConditionResult(name, False, None, 1.0, f"no versions to cover: {where} lists none",
                                   unit="ratio")
    cutoff = now - coverage
    stale = [(c, s) for c, s in latest.items() if s is None or s.last_checked_at is None or s.last_checked_at < cutoff]
    ratio = (total - len(stale)) / total
    if not stale:
        return GateConditionResult(name, True, ratio, 1.0,
                                   f"all {total} versions checked within the last {_duration(coverage)}", unit="ratio")
    never = sum(1 for _, s in stale if s is None or s.last_checked_at is None)
    checked = [(c, s.last_checked_at) for c, s in stale if s is not None and s.last_checked_at is not None]
    detail = f"{len(stale)} of {total} versions not checked within the last {_duration(coverage)}"
    if never:
        detail += f" ({never} never checked)"
    if checked:
        coords, when = min(checked, key=lambda x: x[1])
        detail += f"; stalest: {coords}, last checked {_iso(when)}"
    return GateConditionResult(name, False, ratio, 1.0, detail, unit="ratio")


def _registry_error_ratio(reads: int, errors: int, window: dt.timedelta, limit: float) -> GateConditionResult:
    name = GateCondition.REGISTRY_ERROR_RATIO.value
    if reads == 0:
        return GateConditionResult(name, False, None, limit,
                                   f"no registry reads recorded in the last {_duration(window)}", unit="ratio")
    ratio = errors / reads
    return GateConditionResult(
        name, ratio <= limit, ratio, limit,
        f"{errors} of {reads} registry reads failed in the last {_duration(window)}",
        fails_as=NO_GO, unit="ratio",
    )


def _registry_latency_p99(
    p99: float | None, reads: int, window: dt.timedelta, limit: float
) -> GateConditionResult:
    name = GateCondition.REGISTRY_LATENCY_P99.value
    if p99 is None:
        return GateConditionResult(
            name, False, None, limit,
            f"no successful registry reads recorded in the last {_duration(window)}", unit="seconds",
        )
    return GateConditionResult(
        name, p99 <= limit, p99, limit,
        f"99th percentile of {reads} successful registry reads in the last {_duration(window)}",
        fails_as=NO_GO, unit="seconds",
    )


def _blocking(
    failures: list[RecordedCheck], latest: dict[ArtifactCoordinates, VersionState | None]
) -> list[dict[str, Any]]:
    """Versions that keep the gate from GO by their own outcome: every version that failed in the window
    or whose latest outcome is a failure, then (up to a limit) the undecided: latest `error`, unverified."""
    listed: dict[ArtifactCoordinates, dict[str, Any]] = {}
    for f in failures:
        listed[f.coordinates] = _entry(f.coordinates, f.outcome.value, f.checked_at, [x.value for x in f.faults])
    old = [st for c, st in latest.items() if st is not None and st.outcome in FAILING_OUTCOMES and c not in listed]
    for st in sorted(old, key=lambda st: st.last_checked_at.timestamp() if st.last_checked_at else 0, reverse=True):
        listed[st.coordinates] = _entry(st.coordinates, st.outcome.value if st.outcome else UNVERIFIED,
                                        st.last_checked_at, [x.value for x in st.faults])
    undecided: list[dict[str, Any]] = []
    for c, s in latest.items():
        if c in listed:
            continue
        if s is not None and s.outcome is Outcome.ERROR:
            undecided.append(_entry(c, Outcome.ERROR.value, s.last_checked_at, [x.value for x in s.faults]))
        elif s is None or s.outcome is None:
            undecided.append(_entry(c, UNVERIFIED, None, []))
    undecided.sort(key=lambda e: (e["outcome"] == UNVERIFIED, e["tenant"], e["app"], e["version"]))
    return [*listed.values(), *undecided[:MAX_UNDECIDED_LISTED]]


def _entry(c: ArtifactCoordinates, outcome: str, checked_at: dt.datetime | None, faults: list[str]) -> dict[str, Any]:
    return {**c.fields(), "outcome": outcome, "checked_at": _iso(checked_at) if checked_at else None,
            "faults": faults}


# --- formatting --------------------------------------------------------------------------------------


def _key(c: ArtifactCoordinates) -> tuple[str, str, str]:
    return (c.tenant, c.app, c.version)


def _iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="seconds")


def _round(value: float | None) -> float | None:
    if value is None or isinstance(value, int):
        return value
    return round(value, 6)


def _duration(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{max(value.total_seconds(), 0):.0f}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return " ".join(parts[:2])


def _show(value: float | None, unit: Unit) -> str:
    if value is None:
        return "no data"
    if unit == "ratio":
        return f"{value:.2%}"
    if unit == "seconds":
        return _duration(dt.timedelta(seconds=value)) if value >= 60 else f"{value:.3g}s"
    return _n(int(value), "version")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _threshold(c: GateConditionResult) -> str:
    if c.name == GateCondition.WINDOW_OBSERVED.value:
        return f"≥ {_show(c.threshold, c.unit)}"
    if c.name == GateCondition.COVERAGE_COMPLETE.value:
        return "100%"
    if c.name in (GateCondition.LATEST_ALL_MATCH.value, GateCondition.NO_FAILURES_IN_WINDOW.value):
        return "0 versions"
    return f"≤ {_show(c.threshold, c.unit)}"
