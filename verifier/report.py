"""The report of `check`: JSON exactly as DESIGN.md shows, and text for a person (summary first)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .model import CheckResult, Outcome


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    counts = {"versions": len(results), **{o.value: 0 for o in Outcome}}
    for result in results:
        counts[result.outcome.value] += 1
    return counts


def as_json(results: Sequence[CheckResult]) -> str:
    document: dict[str, Any] = {"summary": summary(results), "results": [r.as_dict() for r in results]}
    return json.dumps(document, indent=2) + "\n"


def as_text(results: Sequence[CheckResult]) -> str:
    counts = summary(results)
    lines = [
        f"{counts['versions']} versions: {counts['match']} match, {counts['mismatch']} mismatch, "
        f"{counts['missing_filesystem']} missing on the filesystem, {counts['missing_oci']} missing in the "
        f"registry, {counts['missing_both']} missing in both, {counts['error']} error",
    ]
    problems = [r for r in results if r.outcome is not Outcome.MATCH]
    if not results:
        lines.append("the inventory is empty: nothing was checked")
    elif not problems:
        lines.append("every version is byte-for-byte identical in both stores")
    for result in problems:
        c = result.coordinates
        side = f" wrong_side={result.wrong_side.value}" if result.wrong_side else ""
        faults = ",".join(f.value for f in result.faults)
        lines.append(f"{result.outcome.value.upper():<18} {c.tenant}/{c.app} {c.version}{side} [{faults}]")
        if result.detail:
            lines.append(f"    {result.detail}")
    return "\n".join(lines) + "\n"
