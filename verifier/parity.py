"""One version, both stores → ``CheckResult``: the outcome, the faults and which side is wrong.

The decision follows DESIGN.md's table: reading failures make `error`, absence makes `missing_*`,
and when the bytes differ each side's self-consistency (its bytes against the registry's own
descriptor, each JAR's zip CRCs) and the inventory's sha256 decide `wrong_side`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .errors import IntegrityError, LayoutError, NotFound, StoreError, UnsafeInput
from .model import (
    CheckResult,
    Digest,
    Fault,
    InvalidDigest,
    InvalidReference,
    InventoryItem,
    OciReference,
    Outcome,
    ReadErrorReason,
    ReadStats,
    WrongSide,
)
from .stores.digest import FileSink
from .stores.filesystem import FileRead, FilesystemStore
from .stores.oci import OciRead, OciStore

log = logging.getLogger("verifier.parity")


@dataclass(frozen=True, slots=True)
class ZipVerdict:
    intact: bool
    detail: str


def jar_integrity(path: str | os.PathLike[str] | IO[bytes]) -> ZipVerdict:
    """Whether the JAR is a valid zip whose every entry passes its CRC-32 (reads it whole)."""
    try:
        with zipfile.ZipFile(path) as jar:
            bad = jar.testzip()
    except zipfile.BadZipFile as exc:
        return ZipVerdict(False, f"not a valid zip ({exc})")
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError, zlib.error) as exc:
        # zlib.error: a deflated entry whose bytes were damaged; RuntimeError: encrypted entries
        return ZipVerdict(False, f"zip cannot be read ({type(exc).__name__}: {exc})")
    if bad is not None:
        return ZipVerdict(False, f"entry {bad!r} fails its CRC-32 check")
    return ZipVerdict(True, "every entry passes its CRC-32 check")


def _short(hexdigest: str | None) -> str:
    return f"sha256:{hexdigest[:12]}…" if hexdigest else "?"


@contextlib.contextmanager
def _failed_read(stats: ReadStats) -> Iterator[None]:
    """A failed read still counts its time; a reason other than "not there" is a read error."""
    started = time.perf_counter()
    try:
        yield
    except StoreError as exc:
        stats.seconds = time.perf_counter() - started
        if not isinstance(exc, NotFound):
            stats.error = exc.reason
        raise


class ParityChecker:
    def __init__(
        self,
        filesystem: FilesystemStore,
        oci: OciStore,
        *,
        repository_template: str = "{tenant}/{app}",
        tag_template: str = "v{version}",
        spool_dir: str | None = None,
    ) -> None:
        self.filesystem = filesystem
        self.oci = oci
        self.repository_template = repository_template
        self.tag_template = tag_template
        self.spool_dir = spool_dir

    async def check(self, item: InventoryItem) -> CheckResult:
        started = time.perf_counter()
        result = CheckResult(item.coordinates, Outcome.ERROR, created_at=item.created_at)
        try:
            await self._check(item, result)
        except Exception as exc:  # a bug must cost one result, not the run
            log.exception("internal error while checking %s", item.coordinates)
            result.outcome, result.wrong_side = Outcome.ERROR, None
            result.faults = [Fault.INTERNAL_ERROR]
            result.detail = f"internal error ({type(exc).__module__}.{type(exc).__name__}): {exc}"
        result.duration_seconds = time.perf_counter() - started
        result.checked_at = dt.datetime.now(dt.UTC)
        return result

    # --- the decision ---------------------------------------------------------------------------

    async def _check(self, item: InventoryItem, result: CheckResult) -> None:
        # Rule 6: a hostile or invalid row is not read at all.
        try:
            relative = self.filesystem.relative_path(item)
            result.filesystem.path = relative
            await asyncio.to_thread(self.filesystem.absolute_path, relative)  # path lookups block
            reference = item.coordinates.oci_reference(self.repository_template, self.tag_template)
            result.oci.reference = str(reference)
            expected = Digest.from_hex(item.sha256) if item.sha256 else None
        except UnsafeInput as exc:
            return self._finish(result, Outcome.ERROR, [Fault.UNSAFE_PATH], None,
                                f"refused to read: {exc}; check the inventory row")
        except InvalidReference as exc:
            return self._finish(result, Outcome.ERROR, [Fault.INVALID_REFERENCE], None,
                                f"refused to read: {exc}; check the inventory row and registry.repository/tag")
        except InvalidDigest:
            return self._finish(result, Outcome.ERROR, [Fault.INVALID_INVENTORY_DIGEST], None,
                                f"the inventory's sha256 {(item.sha256 or '')[:80]!r} is not a sha256 hex digest")

        fs_outcome, oci_outcome = await asyncio.gather(
            self._read_filesystem(item, result), self._read_oci(reference, result), return_exceptions=True
        )
        fs_read = fs_outcome if isinstance(fs_outcome, FileRead) else None
        oci_read = oci_outcome if isinstance(oci_outcome, OciRead) else None
        fs_error = fs_outcome if isinstance(fs_outcome, BaseException) else None
        oci_error = oci_outcome if isinstance(oci_outcome, BaseException) else None
        for error in (fs_error, oci_error):
            if error is not None and not isinstance(error, StoreError):
                raise error

        # Rules 1 and 3: could not read (other than absence) or could not tell which bytes are the JAR.
        failures = [e for e in (fs_error, oci_error) if e is not None and not isinstance(e, NotFound)]
        if failures:
            faults = [e.fault for e in (fs_error, oci_error) if isinstance(e, StoreError)]
            integrity = [e for e in failures if isinstance(e, IntegrityError)]
            if integrity and fs_read is not None and len(failures) == 1:
                return self._finish(result, Outcome.MISMATCH, faults, WrongSide.OCI,
                                    f"the registry is not self-consistent: {integrity[0]}")
            details = "; ".join(f"{side}: {e}" for side, e in (("filesystem", fs_error), ("registry", oci_error))
                                if e is not None)
            return self._finish(result, Outcome.ERROR, faults, None, f"could not decide: {details}")

        # Rule 2: absence.
        if fs_error is not None or oci_error is not None:
            faults = [e.fault for e in (fs_error, oci_error) if isinstance(e, StoreError)]
            if fs_error is not None and oci_error is not None:
                return self._finish(result, Outcome.MISSING_BOTH, faults, None,
                                    "the version is in the inventory but in neither store: "
                                    "the upload never reached either store, or the row is stale")
            if fs_error is not None:
                assert oci_read is not None
                if oci_read.integrity_faults:  # never advise restoring from a copy known to be damaged
                    return self._finish(result, Outcome.MISSING_FILESYSTEM, [*faults, *oci_read.integrity_faults],
                                        None, f"{result.filesystem.path} is not in the filesystem store and the "
                                        f"registry's {reference} contradicts its own descriptor: restore the "
                                        "version from a trusted source")
                return self._finish(result, Outcome.MISSING_FILESYSTEM, faults, None,
                                    f"{result.filesystem.path} is not in the filesystem store but the registry "
                                    f"has {reference}: restore the file from the registry copy")
            return self._finish(result, Outcome.MISSING_OCI, faults, None,
                                f"the registry has no {reference} ({oci_error}): the dual-write missed it; "
                                "push the filesystem copy")
        assert fs_read is not None and oci_read is not None
        await self._compare(item, expected, fs_read, oci_read, reference, result)

    async def _compare(self, item: InventoryItem, expected: Digest | None, fs: FileRead, oci: OciRead,
                       reference: OciReference, result: CheckResult) -> None:
        inventory_sha = expected.hex if expected else None
        registry_faults = list(oci.integrity_faults)
        if fs.sha256 == oci.sha256 and fs.size == oci.size:
            if registry_faults:
                return self._finish(result, Outcome.MISMATCH, registry_faults, WrongSide.OCI,
                                    f"the JAR bytes agree but the registry contradicts its own descriptor for "
                                    f"{reference}; a client verifying digests will reject it: re-push it")
            if inventory_sha is not None and inventory_sha != fs.sha256:
                return self._finish(result, Outcome.MISMATCH, [Fault.INVENTORY_DIGEST_MISMATCH], WrongSide.UNKNOWN,
                                    f"both stores hold {_short(fs.sha256)} but the inventory records "
                                    f"{_short(inventory_sha)}: find which upload is the real one")
            if inventory_sha is None and item.size is not None and item.size != fs.size:
                return self._finish(result, Outcome.MISMATCH, [Fault.INVENTORY_SIZE_MISMATCH], WrongSide.UNKNOWN,
                                    f"both stores hold {fs.size} bytes but the inventory records {item.size}")
            return self._finish(result, Outcome.MATCH, [], None, None)

        # Rule 5: the bytes differ. Self-consistency first (zip CRCs cost a re-read, so only now).
        faults: list[Fault] = list(registry_faults)
        inconsistent: set[WrongSide] = set()
        notes: list[str] = []
        if registry_faults:
            inconsistent.add(WrongSide.OCI)
            notes.append(f"the registry served {oci.layer_size} bytes hashing to {_short(oci.layer_sha256)} "
                         f"for a layer it describes as {oci.layer.size} bytes {_short(oci.layer.digest.hex)}")
        fs_zip = await asyncio.to_thread(self._filesystem_jar_integrity, fs.path)
        if not fs_zip.intact:
            faults.append(Fault.FILESYSTEM_JAR_CORRUPT)
            inconsistent.add(WrongSide.FILESYSTEM)
            notes.append(f"the file's JAR: {fs_zip.detail}")
        if not registry_faults:
            oci_zip = await self._registry_jar_integrity(reference, oci.sha256)
            if oci_zip is not None and not oci_zip.intact:
                faults.append(Fault.OCI_JAR_CORRUPT)
                inconsistent.add(WrongSide.OCI)
                notes.append(f"the registry's JAR: {oci_zip.detail}")
        if len(inconsistent) == 1:
            side = inconsistent.pop()
        elif inconsistent:
            side = WrongSide.BOTH
        elif inventory_sha is not None and inventory_sha in (fs.sha256, oci.sha256):
            side = WrongSide.OCI if fs.sha256 == inventory_sha else WrongSide.FILESYSTEM
            faults.append(Fault.INVENTORY_DIGEST_MISMATCH)
            notes.append(f"the inventory records {_short(inventory_sha)}, as the "
                         f"{'filesystem' if side is WrongSide.OCI else 'registry'} does")
        elif inventory_sha is not None:
            side = WrongSide.BOTH
            faults.append(Fault.INVENTORY_DIGEST_MISMATCH)
            notes.append(f"neither store holds the inventory's {_short(inventory_sha)}")
        else:
            side = WrongSide.UNKNOWN
            faults.append(Fault.STORES_DIFFER)
            notes.append("both JARs are intact and self-consistent, so the tag points at a different upload; "
                         "compare upload times or the platform's record to tell which is right")
        action = {
            WrongSide.OCI: f"re-push {reference} from the filesystem copy",
            WrongSide.FILESYSTEM: f"restore {fs.path} from the registry copy",
            WrongSide.BOTH: "restore both from a trusted source",
            WrongSide.UNKNOWN: "decide by hand",
        }[side]
        detail = (f"filesystem {fs.size} bytes {_short(fs.sha256)} vs registry {oci.size} bytes "
                  f"{_short(oci.sha256)}: {'; '.join(notes)}; {action}")
        self._finish(result, Outcome.MISMATCH, faults, side, detail)

    def _filesystem_jar_integrity(self, relative: str) -> ZipVerdict:
        try:
            fd = self.filesystem.open_verified(relative)
        except (OSError, StoreError) as exc:
            return ZipVerdict(False, f"cannot be reopened for its zip check ({exc})")
        with os.fdopen(fd, "rb") as handle:
            return jar_integrity(handle)

    async def _registry_jar_integrity(self, reference: OciReference, expected_sha256: str) -> ZipVerdict | None:
        """Re-read the registry's JAR into a temporary file and test its zip; None if it cannot be re-read
        or the registry now serves other bytes (the tag moved): then the zip check cannot judge."""
        handle = tempfile.NamedTemporaryFile(prefix="parity-", suffix=".jar", dir=self.spool_dir, delete=False)
        try:
            with handle:
                sink = FileSink(handle)
                try:
                    again = await self.oci.read(reference, member_sink=lambda _name: sink)
                except (StoreError, LayoutError) as exc:
                    log.warning("could not re-read %s for its zip check: %s", reference, exc)
                    return None
                if again.sha256 != expected_sha256:
                    log.warning("%s changed between two reads; its zip check is skipped", reference)
                    return None
            return await asyncio.to_thread(jar_integrity, handle.name)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(handle.name)

    # --- reads ---------------------------------------------------------------------------------

    async def _read_filesystem(self, item: InventoryItem, result: CheckResult) -> FileRead:
        stats = result.filesystem.read = ReadStats(attempted=True)
        with _failed_read(stats):
            read = await self.filesystem.read(item)
        stats.seconds, stats.bytes = read.seconds, read.size
        result.filesystem.size, result.filesystem.sha256 = read.size, read.sha256
        return read

    async def _read_oci(self, reference: OciReference, result: CheckResult) -> OciRead:
        stats = result.oci.read = ReadStats(attempted=True)
        with _failed_read(stats):
            read = await self.oci.read(reference)
        stats.seconds, stats.bytes = read.seconds, read.layer_size
        if read.integrity_faults:
            stats.error = ReadErrorReason.INTEGRITY
        evidence = result.oci
        evidence.manifest_digest = str(read.manifest_digest)
        evidence.layer_digest = str(read.layer.digest)
        evidence.layer_size = read.layer.size
        evidence.layer_media_type = read.layer.media_type
        evidence.size, evidence.sha256, evidence.member = read.size, read.sha256, read.member
        return read

    @staticmethod
    def _finish(result: CheckResult, outcome: Outcome, faults: list[Fault], side: WrongSide | None,
                detail: str | None) -> None:
        result.outcome = outcome
        result.faults = list(dict.fromkeys(faults))  # ordered, unique
        result.wrong_side = side
        result.detail = detail

