"""The exception tree, grouped by what the caller can do about it.

    VerifierError
    ├── ConfigError                 bad configuration: fix the file (exit 2)
    ├── SourceUnavailable           inventory or ledger unreachable: retry later (exit 3)
    └── StoreError                  one store, one artifact; becomes an outcome, never escapes a check
        ├── NotFound                "not there": missing_* outcomes
        │   ├── FileMissing
        │   └── RegistryNotFound    MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN (code kept)
        ├── Unreadable              could not decide: `error` outcome
        │   ├── FileUnreadable
        │   ├── RegistryError       status, registry error codes, redacted URL, temporary or not
        │   └── UnsafeInput         a row that must not be read (path escape, invalid reference)
        ├── LayoutError             the manifest does not say which bytes are the JAR
        └── IntegrityError          bytes did not match what their own descriptor promised

Every error carries the `Fault` it stands for, so that parity decides outcomes from typed evidence
and nothing above the stores catches aiohttp or OS exceptions. Messages never contain credentials.
"""

from __future__ import annotations

from .model import Fault, ReadErrorReason


class VerifierError(Exception):
    pass


class ConfigError(VerifierError):
    """One or more configuration problems, each naming its key and file."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class SourceUnavailable(VerifierError):
    """The inventory or the ledger cannot be reached now."""


class StoreError(VerifierError):
    fault: Fault = Fault.INTERNAL_ERROR
    reason: ReadErrorReason | None = None

    def __init__(self, message: str, *, fault: Fault | None = None, reason: ReadErrorReason | None = None):
        super().__init__(message)
        if fault is not None:
            self.fault = fault
        if reason is not None:
            self.reason = reason


class NotFound(StoreError):
    pass


class FileMissing(NotFound):
    fault = Fault.FILESYSTEM_MISSING


class RegistryNotFound(NotFound):
    def __init__(self, message: str, *, code: str | None, fault: Fault):
        super().__init__(message, fault=fault)
        self.code = code


class Unreadable(StoreError):
    reason: ReadErrorReason | None = ReadErrorReason.UNREADABLE


class FileUnreadable(Unreadable):
    fault = Fault.FILESYSTEM_UNREADABLE


class UnsafeInput(Unreadable):
    """A row that must not be read at all. Not a read error of a store: reason stays None."""

    reason = None


class RegistryError(Unreadable):
    def __init__(
        self,
        message: str,
        *,
        fault: Fault,
        reason: ReadErrorReason,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        url: str | None = None,
        temporary: bool = False,
    ):
        super().__init__(message, fault=fault, reason=reason)
        self.status = status
        self.codes = codes
        self.url = url
        self.temporary = temporary


class LayoutError(StoreError):
    """No, several, or an unsupported JAR layer: cannot decide which bytes to compare."""

    reason = None


class IntegrityError(StoreError):
    """Bytes read do not match the descriptor (digest or size) they were fetched by."""

    reason: ReadErrorReason | None = ReadErrorReason.INTEGRITY

    def __init__(self, message: str, *, fault: Fault, expected: str, actual: str, bytes_read: int):
        super().__init__(message, fault=fault)
        self.expected = expected
        self.actual = actual
        self.bytes_read = bytes_read
