"""Check results built directly (no registry needed) for the ledger and gate tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence

from verifier.ledger import Ledger
from verifier.model import (
    ArtifactCoordinates,
    CheckResult,
    Fault,
    FilesystemEvidence,
    InventoryItem,
    OciEvidence,
    Outcome,
    ReadErrorReason,
    ReadStats,
    WrongSide,
)

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HASH_A = "a" * 64
HASH_B = "b" * 64


def coords(app: str = "orders", version: str = "1.0.0", tenant: str = "acme") -> ArtifactCoordinates:
    return ArtifactCoordinates(tenant, app, version)


def item(c: ArtifactCoordinates, created_at: dt.datetime | None = None) -> InventoryItem:
    return InventoryItem(c, created_at=created_at)


def result(
    c: ArtifactCoordinates,
    outcome: Outcome = Outcome.MATCH,
    at: dt.datetime = T0,
    *,
    faults: Sequence[Fault] = (),
    wrong_side: WrongSide | None = None,
    detail: str | None = None,
    oci_seconds: float = 0.2,
    oci_error: ReadErrorReason | None = None,
    oci_read: bool = True,
    created_at: dt.datetime | None = None,
) -> CheckResult:
    """A finished check with both stores' evidence, as parity would produce it."""
    oci_sha = HASH_B if outcome is Outcome.MISMATCH else HASH_A
    return CheckResult(
        coordinates=c,
        outcome=outcome,
        faults=list(faults),
        wrong_side=wrong_side,
        filesystem=FilesystemEvidence(
            path=f"{c.tenant}/{c.app}/{c.version}/app.jar", size=1000, sha256=HASH_A,
            read=ReadStats(attempted=True, seconds=0.01, bytes=1000),
        ),
        oci=OciEvidence(
            reference=f"{c.tenant}/{c.app}:v{c.version}", manifest_digest=f"sha256:{'c' * 64}",
            layer_digest=f"sha256:{oci_sha}", layer_size=1000, size=1000, sha256=oci_sha,
            layer_media_type="application/java-archive",
            read=ReadStats(attempted=oci_read, seconds=oci_seconds, bytes=0 if oci_error else 1000, error=oci_error),
        ),
        detail=detail,
        checked_at=at,
        duration_seconds=oci_seconds + 0.01,
        created_at=created_at,
    )


def mismatch(c: ArtifactCoordinates, at: dt.datetime) -> CheckResult:
    return result(c, Outcome.MISMATCH, at, faults=[Fault.OCI_BLOB_DIGEST_MISMATCH], wrong_side=WrongSide.OCI,
                  detail="the registry served bytes that do not hash to its own descriptor")


async def record_all(ledger: Ledger, results: Iterable[CheckResult]) -> None:
    await asyncio.gather(*(ledger.record(r) for r in results))


def every(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    times, t = [], start
    while t <= end:
        times.append(t)
        t += step
    return times


async def healthy_history(
    ledger: Ledger, versions: Sequence[ArtifactCoordinates], start: dt.datetime, end: dt.datetime,
    step: dt.timedelta = dt.timedelta(hours=6),
) -> None:
    """Every version matched every `step` from `start` to `end` (staggered by a minute per version)."""
    await record_all(ledger, (
        result(c, Outcome.MATCH, t + dt.timedelta(minutes=i))
        for t in every(start, end, step) for i, c in enumerate(versions)
    ))
