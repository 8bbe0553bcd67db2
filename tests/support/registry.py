"""The CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1, and ways to push to it."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import requests

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Layer:
    data: bytes
    media_type: str = "application/java-archive"
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


@dataclass
class RegistryServer:
    url: str
    storage: Path
    username: str
    password: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    # --- pushing, as the platform's upload path would -----------------------------------------------

    def push_jar_with_oras(self, repository: str, tag: str, jar: Path) -> None:
        """One `application/java-archive` layer with a title annotation, exactly as oras writes it."""
        import oras.provider

        registry = oras.provider.Registry(self.host, insecure=True, auth_backend="basic")
        registry.auth.set_basic_auth(self.username, self.password)
        response = registry.push(target=f"{self.host}/{repository}:{tag}",
                                 files=[f"{jar}:application/java-archive"], disable_path_validation=True,
                                 quiet=True)
        response.raise_for_status()

    def push_manifest(self, repository: str, tag: str, layers: list[Layer], *,
                      media_type: str = "application/vnd.oci.image.manifest.v1+json",
                      config_media_type: str = "application/vnd.unknown.config.v1+json",
                      config: bytes = b"{}") -> str:
        """Push blobs and a manifest by hand, for shapes the upload path does not make. Returns its digest."""
        config_layer = Layer(config, config_media_type)
        for blob in (config_layer, *layers):
            self.put_blob(repository, blob.data)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_media_type, "digest": config_layer.digest, "size": len(config)},
            "layers": [
                {"mediaType": layer.media_type, "digest": layer.digest, "size": len(layer.data),
                 **({"annotations": layer.annotations} if layer.annotations else {})}
                for layer in layers
            ],
        }
        return self.put_manifest(repository, tag, json.dumps(manifest).encode(), media_type)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self._session().put(f"{self.url}/v2/{repository}/manifests/{reference}", data=body,
                                       headers={"Content-Type": media_type}, timeout=30)
        response.raise_for_status()
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def put_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        session = self._session()
        start = session.post(f"{self.url}/v2/{repository}/blobs/uploads/", timeout=30)
        start.raise_for_status()
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        sep = "&" if "?" in location else "?"
        done = session.put(f"{location}{sep}digest={digest}", data=data,
                           headers={"Content-Type": "application/octet-stream"}, timeout=60)
        done.raise_for_status()
        return digest

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.auth = (self.username, self.password)
        return session

    # --- reaching into its storage, to plant faults -----------------------------------------------

    def blob_file(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def tag_link(self, repository: str, tag: str) -> Path:
        return self.storage / "docker/registry/v2/repositories" / repository / "_manifests/tags" / tag / "current/link"

    def manifest_of(self, repository: str, tag: str) -> dict:
        digest = self.tag_link(repository, tag).read_text().strip()
        return json.loads(self.blob_file(digest).read_bytes())

    def jar_layer_digest(self, repository: str, tag: str) -> str:
        return self.manifest_of(repository, tag)["layers"][0]["digest"]

    def retag(self, repository: str, tag: str, manifest_digest: str) -> None:
        """Point a tag at another manifest (in the same repository), as an overwritten tag would."""
        self.tag_link(repository, tag).write_text(manifest_digest)

    def delete_tag(self, repository: str, tag: str) -> None:
        shutil.rmtree(self.tag_link(repository, tag).parent.parent)


def tar_wrapped(jar: bytes, name: str = "app/app.jar", *, gzipped: bool = True, extra: dict[str, bytes] | None = None
                ) -> bytes:
    """A tar(.gz) layer holding the JAR (and maybe other members), as made for Zot's scanner."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member_name, data in {**(extra or {}), name: jar}.items():
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if gzipped else raw


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/v2/", timeout=1)  # noqa: S310 - 127.0.0.1 only
        return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


@contextlib.contextmanager
def running_registry(workdir: Path, *, auth: bool = True) -> Iterator[RegistryServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    username, password = "parity", "pw-" + secrets.token_hex(8)
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n")
        config["auth"] = {"htpasswd": {"realm": "parity-tests", "path": str(htpasswd)}}
    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log = open(workdir / "registry.log", "wb")
    process = subprocess.Popen([BINARY, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"docker-registry did not start: {(workdir / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.05)
    server = RegistryServer(url, storage, username, password, process)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
