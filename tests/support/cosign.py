"""Genuine cosign-compatible key signatures, made with the openssl CLI (an implementation independent of ours).

Cosign's documentation shows the interchange: a payload signed with ``openssl dgst -sha256 -sign`` on
a ``prime256v1`` key, base64-encoded, verifies with ``cosign verify --key``. The signature is pushed as
cosign pushes it (legacy scheme): tag ``sha256-<hex of the signed manifest digest>.sig``, one layer per
signature of media type ``application/vnd.dev.cosign.simplesigning.v1+json`` whose blob is the exact
signed payload and whose annotation ``dev.cosignproject.cosign/signature`` holds the base64 DER signature.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .registry import Layer, RegistryServer

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout


@dataclass(frozen=True)
class CosignKey:
    """An ECDSA P-256 key pair as `cosign generate-key-pair` makes (PEM public key beside it)."""

    private_key: Path
    public_key: Path

    @classmethod
    def generate(cls, directory: Path, name: str = "cosign") -> CosignKey:
        directory.mkdir(parents=True, exist_ok=True)
        private = directory / f"{name}.key"
        public = directory / f"{name}.pub"
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(private))
        _openssl("ec", "-in", str(private), "-pubout", "-out", str(public))
        return cls(private, public)

    @property
    def public_pem(self) -> bytes:
        return self.public_key.read_bytes()

    def sign(self, payload: bytes) -> str:
        """Standard base64 of the ASN.1 DER ECDSA signature over SHA-256 of the raw payload bytes."""
        with tempfile.NamedTemporaryFile() as handle:
            handle.write(payload)
            handle.flush()
            der = _openssl("dgst", "-sha256", "-sign", str(self.private_key), handle.name)
        return base64.b64encode(der).decode()

    def verify_with_openssl(self, payload: bytes, signature_b64: str) -> bool:
        """openssl's own verdict, to show a test's signature is genuine (or genuinely broken)."""
        with tempfile.TemporaryDirectory() as tmp:
            data, sig = Path(tmp) / "payload", Path(tmp) / "sig"
            data.write_bytes(payload)
            sig.write_bytes(base64.b64decode(signature_b64))
            done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(self.public_key), "-signature",
                                   str(sig), str(data)], capture_output=True, check=False, timeout=30)
        return done.returncode == 0


def simple_signing_payload(manifest_digest: str, docker_reference: str, *, kind: str = PAYLOAD_TYPE,
                           optional: dict[str, str] | None = None) -> bytes:
    """The payload cosign signs: compact JSON, as cosign writes it."""
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": kind,
        },
        "optional": optional,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def tamper(signature_b64: str) -> str:
    """The same signature with one bit flipped in its last byte (still valid base64 and DER length)."""
    raw = bytearray(base64.b64decode(signature_b64))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@dataclass(frozen=True)
class Signature:
    payload: bytes
    signature: str

    def layer(self) -> Layer:
        return Layer(self.payload, SIMPLE_SIGNING, {SIGNATURE_ANNOTATION: self.signature})


def sign(key: CosignKey, registry: RegistryServer, repository: str, manifest_digest: str, *,
         payload_digest: str | None = None, kind: str = PAYLOAD_TYPE) -> Signature:
    """A signature of ``manifest_digest`` (or, to forge a replay, a payload naming ``payload_digest``)."""
    payload = simple_signing_payload(payload_digest or manifest_digest, f"{registry.host}/{repository}", kind=kind)
    return Signature(payload, key.sign(payload))


def push_signatures(registry: RegistryServer, repository: str, manifest_digest: str,
                    signatures: list[Signature]) -> str:
    """Push ``sha256-<hex>.sig`` with one simple-signing layer per signature. Returns the tag."""
    tag = f"sha256-{manifest_digest.split(':', 1)[1]}.sig"
    config = json.dumps({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z", "history": [
        {"created": "0001-01-01T00:00:00Z"}], "os": "", "rootfs": {"type": "layers", "diff_ids": [
        s.layer().digest for s in signatures]}}, separators=(",", ":")).encode()
    registry.push_manifest(repository, tag, [s.layer() for s in signatures],
                           config_media_type="application/vnd.oci.image.config.v1+json", config=config)
    return tag


def sign_and_push(key: CosignKey, registry: RegistryServer, repository: str, manifest_digest: str) -> Signature:
    signature = sign(key, registry, repository, manifest_digest)
    push_signatures(registry, repository, manifest_digest, [signature])
    return signature
