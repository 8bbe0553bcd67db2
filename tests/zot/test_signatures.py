"""Signature status: Zot's IsSigned/SignatureInfo, and the independent cosign check with our own key.

The signatures are genuine: made by the openssl CLI on prime256v1 keys and pushed under the
``sha256-<hex>.sig`` tag as cosign pushes them; the emulator's trust decision verifies them with the
keys "uploaded" to it, as Zot does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.cosign import CosignKey, Signature, push_signatures, sign, sign_and_push, tamper
from tests.support.registry import RegistryServer
from tests.support.zot_emulator import ZotEmulator
from tests.zot.helpers import Apps, only_scan, only_signature, sample, scan_gauge, signature_gauge
from verifier.errors import ConfigError
from verifier.metrics import Metrics
from verifier.model import Digest
from verifier.stores.oci import RegistryTransport
from verifier.zot import CosignVerifier, SignatureStatus, ZotMonitor

# --- Zot decides (no key configured) -------------------------------------------------------------------


async def test_signed_with_a_key_zot_trusts(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                            cosign_keys: tuple[CosignKey, CosignKey], metrics: Metrics) -> None:
    ours, _ = cosign_keys
    digest = apps.push("orders", "1.0.0")
    sign_and_push(ours, apps.registry, apps.repository("orders"), digest)
    zot.trust_cosign_key(ours.public_pem)
    monitor = ZotMonitor(zot_transport)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)

    assert signature_gauge(metrics) == only_signature("trusted")
    assert snapshot.signature_source == "zot"
    assert snapshot.versions[0].digest == digest


async def test_signed_but_no_signature_trusted(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                               cosign_keys: tuple[CosignKey, CosignKey], metrics: Metrics) -> None:
    ours, theirs = cosign_keys
    digest = apps.push("orders", "1.0.0")
    sign_and_push(theirs, apps.registry, apps.repository("orders"), digest)
    zot.trust_cosign_key(ours.public_pem)  # a key, but not the one that signed
    monitor = ZotMonitor(zot_transport, require_signatures=True)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)

    assert signature_gauge(metrics) == only_signature("untrusted")
    assert sample(metrics, "signatures_required") == 1
    assert snapshot.signature_requirement_met is False
    assert any("require_signatures" in note for note in snapshot.notes)


async def test_any_trusted_signature_makes_it_trusted(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                      apps: Apps, cosign_keys: tuple[CosignKey, CosignKey],
                                                      metrics: Metrics) -> None:
    ours, theirs = cosign_keys
    digest = apps.push("orders", "1.0.0")
    repo = apps.repository("orders")
    push_signatures(apps.registry, repo, digest, [sign(theirs, apps.registry, repo, digest),
                                                  sign(ours, apps.registry, repo, digest)])
    zot.trust_cosign_key(ours.public_pem)
    monitor = ZotMonitor(zot_transport, require_signatures=True)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)

    assert signature_gauge(metrics) == only_signature("trusted")
    assert snapshot.signature_requirement_met is True


async def test_unsigned(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps, metrics: Metrics) -> None:
    apps.push("orders", "1.0.0")
    monitor = ZotMonitor(zot_transport)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)

    assert signature_gauge(metrics) == only_signature("unsigned")
    assert sample(metrics, "signatures_required") == 0
    assert snapshot.signature_requirement_met is None


async def test_key_uploaded_through_zots_cosign_endpoint(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                         zot_backing_registry: RegistryServer, apps: Apps,
                                                         cosign_keys: tuple[CosignKey, CosignKey]) -> None:
    import requests

    ours, _ = cosign_keys
    digest = apps.push("orders", "1.0.0")
    sign_and_push(ours, apps.registry, apps.repository("orders"), digest)
    monitor = ZotMonitor(zot_transport)
    before = await monitor.refresh([apps.item("orders", "1.0.0")])

    import asyncio
    response = await asyncio.to_thread(
        requests.post, f"{zot.url}/v2/_zot/ext/cosign", data=ours.public_pem, timeout=10,
        auth=(zot_backing_registry.username, zot_backing_registry.password))
    assert response.status_code == 200
    after = await monitor.refresh([apps.item("orders", "1.0.0")])

    assert before.versions[0].signature is SignatureStatus.UNTRUSTED
    assert after.versions[0].signature is SignatureStatus.TRUSTED


# --- the independent check decides -----------------------------------------------------------------------


def _monitor(transport: RegistryTransport, key: CosignKey) -> ZotMonitor:
    return ZotMonitor(transport, cosign_public_key=key.public_key)


async def test_cosign_check_accepts_a_genuine_signature(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                        apps: Apps, cosign_keys: tuple[CosignKey, CosignKey],
                                                        metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    ours, _ = cosign_keys
    digest = apps.push("orders", "1.0.0")
    signature = sign_and_push(ours, apps.registry, apps.repository("orders"), digest)
    assert ours.verify_with_openssl(signature.payload, signature.signature)
    zot.trust_cosign_key(ours.public_pem)
    monitor = _monitor(zot_transport, ours)

    with caplog.at_level(logging.INFO, logger="verifier.zot"):
        snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)

    assert signature_gauge(metrics) == only_signature("trusted")
    (version,) = snapshot.versions
    assert (version.cosign_signature, version.zot_signature) == (SignatureStatus.TRUSTED, SignatureStatus.TRUSTED)
    assert snapshot.signature_source == "cosign" and snapshot.disagreements == 0
    assert not [r for r in caplog.records if "disagree" in r.getMessage() or "says" in r.getMessage()]


@pytest.mark.parametrize("forgery", ["wrong key", "payload names another digest", "tampered signature",
                                     "not a cosign payload type"])
async def test_cosign_check_rejects(forgery: str, zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                    cosign_keys: tuple[CosignKey, CosignKey], metrics: Metrics,
                                    caplog: pytest.LogCaptureFixture) -> None:
    ours, theirs = cosign_keys
    repo = apps.repository("orders")
    digest = apps.push("orders", "1.0.0")
    other = apps.push("orders", "0.9.0")
    if forgery == "wrong key":
        signature, zot_key = sign(theirs, apps.registry, repo, digest), theirs
        expected = "does not verify with the configured key"
    elif forgery == "payload names another digest":  # a genuine signature of another version, replayed
        signature, zot_key = sign(ours, apps.registry, repo, digest, payload_digest=other), ours
        expected = f"names {other}, not this manifest {digest}"
    elif forgery == "tampered signature":
        genuine = sign(ours, apps.registry, repo, digest)
        signature, zot_key = Signature(genuine.payload, tamper(genuine.signature)), None
        assert not ours.verify_with_openssl(signature.payload, signature.signature)
        expected = "does not verify with the configured key"
    else:
        signature, zot_key = sign(ours, apps.registry, repo, digest, kind="something else"), ours
        expected = "not 'cosign container image signature'"
    push_signatures(apps.registry, repo, digest, [signature])
    if zot_key is not None:
        zot.trust_cosign_key(zot_key.public_pem)
    monitor = _monitor(zot_transport, ours)

    with caplog.at_level(logging.WARNING, logger="verifier.zot"):
        snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)

    assert signature_gauge(metrics) == only_signature("untrusted")
    (version,) = snapshot.versions
    assert version.cosign_signature is SignatureStatus.UNTRUSTED
    assert expected in (version.detail or "")
    if zot_key is not None:
        # Zot checks only the signature with its uploaded key: it trusts what our check rejects
        assert version.zot_signature is SignatureStatus.TRUSTED
        assert snapshot.disagreements == 1
        warnings = [r.getMessage() for r in caplog.records if r.name == "verifier.zot"]
        assert any(apps.reference("orders", "1.0.0") in w and "cosign key says untrusted" in w
                   and "IsTrusted says trusted" in w for w in warnings)
    else:
        assert version.zot_signature is SignatureStatus.UNTRUSTED and snapshot.disagreements == 0


async def test_disagreement_is_logged_once_not_every_refresh(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                            apps: Apps, cosign_keys: tuple[CosignKey, CosignKey],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    ours, theirs = cosign_keys
    digest = apps.push("orders", "1.0.0")
    sign_and_push(theirs, apps.registry, apps.repository("orders"), digest)
    zot.trust_cosign_key(theirs.public_pem)
    monitor = _monitor(zot_transport, ours)
    with caplog.at_level(logging.WARNING, logger="verifier.zot"):
        for _ in range(3):
            snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    assert snapshot.disagreements == 1
    assert len([r for r in caplog.records if "IsTrusted says" in r.getMessage()]) == 1


async def test_cosign_check_unsigned(zot: ZotEmulator, zot_transport: RegistryTransport, apps: Apps,
                                     cosign_keys: tuple[CosignKey, CosignKey], metrics: Metrics) -> None:
    apps.push("orders", "1.0.0")
    monitor = _monitor(zot_transport, cosign_keys[0])
    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])
    monitor.apply(snapshot, metrics)
    assert signature_gauge(metrics) == only_signature("unsigned")


async def test_plain_registry_with_a_key_verifies_signatures(plain_transport: RegistryTransport, apps: Apps,
                                                             cosign_keys: tuple[CosignKey, CosignKey],
                                                             metrics: Metrics) -> None:
    """No Zot at all: scans are unavailable, but the configured key still tells trusted from not."""
    ours, theirs = cosign_keys
    repo = apps.repository("orders")
    good = apps.push("orders", "1")
    bad = apps.push("orders", "2")
    apps.push("orders", "3")
    sign_and_push(ours, apps.registry, repo, good)
    sign_and_push(theirs, apps.registry, repo, bad)
    monitor = _monitor(plain_transport, ours)

    snapshot = await monitor.refresh([apps.item("orders", v) for v in ("1", "2", "3")])
    monitor.apply(snapshot, metrics)

    assert signature_gauge(metrics) == {"trusted": 1, "untrusted": 1, "unsigned": 1, "unavailable": 0}
    assert scan_gauge(metrics) == only_scan("unavailable", 3)
    assert snapshot.flavour.name == "distribution" and snapshot.complete


async def test_cosign_blob_is_hashed_before_it_is_believed(zot: ZotEmulator, zot_transport: RegistryTransport,
                                                           apps: Apps, cosign_keys: tuple[CosignKey, CosignKey]
                                                           ) -> None:
    """A payload blob whose bytes were swapped on disk does not count, even though its signature is fine
    for the bytes the manifest promised."""
    ours, _ = cosign_keys
    digest = apps.push("orders", "1.0.0")
    signature = sign_and_push(ours, apps.registry, apps.repository("orders"), digest)
    blob = apps.registry.blob_file(signature.layer().digest)
    data = bytearray(blob.read_bytes())
    data[10] ^= 0x20  # same size, other bytes: the registry still serves it with status 200
    blob.write_bytes(bytes(data))
    monitor = _monitor(zot_transport, ours)

    snapshot = await monitor.refresh([apps.item("orders", "1.0.0")])

    assert snapshot.versions[0].cosign_signature is SignatureStatus.UNTRUSTED
    assert "served bytes hashing to" in (snapshot.versions[0].detail or "")


def test_openssl_signatures_verify_with_our_verifier(cosign_keys: tuple[CosignKey, CosignKey]) -> None:
    """Two implementations agree: what openssl signs, `cryptography` verifies, bound to the digest."""
    ours, theirs = cosign_keys
    digest = Digest("ab" * 32)
    from tests.support.cosign import simple_signing_payload
    payload = simple_signing_payload(str(digest), "registry.example/acme/orders")
    signature = ours.sign(payload)
    verifier = CosignVerifier(ours.public_pem)
    assert verifier.verify_layer(payload, signature, digest) is None
    assert verifier.verify_layer(payload, signature, Digest("cd" * 32)) is not None
    assert CosignVerifier(theirs.public_pem).verify_layer(payload, signature, digest) is not None
    assert verifier.verify_layer(payload, "not base64!", digest) == "the signature annotation is not base64"


def test_bad_keys_are_configuration_errors(tmp_path: Path) -> None:
    import subprocess

    with pytest.raises(ConfigError, match="zot.cosign_public_key: cannot read"):
        CosignVerifier.from_file(tmp_path / "missing.pub")
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        CosignVerifier.from_file(tmp_path / "junk.pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out",
                    str(tmp_path / "rsa.key")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "rsa.key"), "-pubout", "-out",
                    str(tmp_path / "rsa.pub")], check=True, capture_output=True)
    with pytest.raises(ConfigError, match="ECDSA P-256"):
        CosignVerifier.from_file(tmp_path / "rsa.pub")
