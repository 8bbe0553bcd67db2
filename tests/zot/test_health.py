"""The registry prober: up/down and duration as metrics, the reason kept for the status page."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.registry import RegistryServer, free_port
from tests.zot.helpers import credentials, sample
from verifier.health import RegistryProber
from verifier.metrics import Metrics
from verifier.stores.oci import Credentials, RegistryTransport


async def test_registry_up(zot_backing_registry: RegistryServer, metrics: Metrics) -> None:
    async with RegistryTransport(zot_backing_registry.url, credentials=credentials(zot_backing_registry)) as t:
        result = await RegistryProber(t, metrics).probe_once()
    assert result.ok and result.reason is None
    assert sample(metrics, "registry_up") == 1
    assert 0 < sample(metrics, "registry_probe_duration_seconds") < 5


@pytest.mark.parametrize(("where", "reason", "text"), [
    ("wrong password", "unauthorized", "authentication failed"),
    ("nothing listening", "unreachable", "cannot connect"),
])
async def test_registry_down_keeps_the_reason(where: str, reason: str, text: str,
                                              zot_backing_registry: RegistryServer, metrics: Metrics) -> None:
    if where == "wrong password":
        url, creds = zot_backing_registry.url, Credentials(zot_backing_registry.username, "wrong")
    else:
        url, creds = f"http://127.0.0.1:{free_port()}", None
    async with RegistryTransport(url, credentials=creds, timeout_seconds=2) as transport:
        prober = RegistryProber(transport, metrics)
        result = await prober.probe_once()

    assert not result.ok and result.reason == reason and text in (result.message or "")
    assert sample(metrics, "registry_up") == 0
    assert sample(metrics, "registry_probe_duration_seconds") >= 0
    status = prober.as_dict()
    assert status["up"] is False
    assert status["last_failure"]["reason"] == reason
    assert status["recent_failures"][0]["message"] == result.message
    assert "wrong" not in str(status)  # never the password


async def test_recovery_and_history(zot_backing_registry: RegistryServer, metrics: Metrics) -> None:
    good = RegistryTransport(zot_backing_registry.url, credentials=credentials(zot_backing_registry))
    bad = RegistryTransport(zot_backing_registry.url, credentials=Credentials("parity", "nope"))
    async with good, bad:
        prober = RegistryProber(bad, metrics, history=3)
        for _ in range(5):
            await prober.probe_once()
        prober.transport = good
        await prober.probe_once()
    assert sample(metrics, "registry_up") == 1
    status = prober.as_dict()
    assert status["up"] is True and status["probes"] == 6
    assert len(status["recent_failures"]) == 3  # bounded
    assert status["last_failure"]["reason"] == "unauthorized"  # still shown after recovery


async def test_run_forever_probes_on_an_interval(zot_backing_registry: RegistryServer, metrics: Metrics) -> None:
    async with RegistryTransport(zot_backing_registry.url, credentials=credentials(zot_backing_registry)) as t:
        prober = RegistryProber(t, metrics)
        task = asyncio.create_task(prober.run_forever(0.05))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert 3 <= prober.probes <= 8
    assert sample(metrics, "registry_up") == 1
