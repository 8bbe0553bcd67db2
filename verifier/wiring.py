"""Settings → the objects that do the work, shared by `check` and `run`."""

from __future__ import annotations

from .budget import RegistryBudget
from .config import Settings
from .parity import ParityChecker
from .stores.filesystem import FilesystemStore
from .stores.oci import Credentials, OciStore, RegistryTransport


def make_transport(settings: Settings) -> RegistryTransport:
    registry = settings.registry
    credentials = None
    if registry.username is not None:
        password = registry.password.get_secret_value() if registry.password is not None else ""
        credentials = Credentials(registry.username, password)
    return RegistryTransport(
        registry.url,
        credentials=credentials,
        ca_file=str(registry.ca_file) if registry.ca_file else None,
        timeout_seconds=registry.timeout_seconds,
        concurrency=settings.schedule.concurrency,
        budget=RegistryBudget(settings.schedule.max_requests_per_second, settings.schedule.max_bytes_per_second),
    )


def make_checker(settings: Settings, transport: RegistryTransport) -> ParityChecker:
    return ParityChecker(
        FilesystemStore(settings.filesystem.root, settings.filesystem.path,
                        timeout_seconds=settings.filesystem.timeout_seconds),
        OciStore(transport),
        repository_template=settings.registry.repository,
        tag_template=settings.registry.tag,
    )
