"""Throughput and memory of verification, as ratios against shell pipelines in the same run.

    python bench/hash_throughput.py [--size-mb 512] [--small 400]

Prints, for a large JAR: `openssl dgst FILE` and our filesystem read; `curl | openssl dgst` and our
registry read (manifest + blob); then peak RSS of a check for a small and a large JAR (flat memory),
and small JARs verified per second (both stores, concurrency 8). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.jars import build_jar  # noqa: E402
from tests.support.registry import RegistryServer, running_registry  # noqa: E402
from verifier.model import ArtifactCoordinates, InventoryItem, OciReference  # noqa: E402
from verifier.parity import ParityChecker  # noqa: E402
from verifier.stores.filesystem import FilesystemStore  # noqa: E402
from verifier.stores.oci import Credentials, OciStore, RegistryTransport  # noqa: E402

REPEAT = 3


def best_of(fn, repeat: int = REPEAT) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def shell(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


def transport(registry: RegistryServer, concurrency: int = 8) -> RegistryTransport:
    return RegistryTransport(registry.url, credentials=Credentials(registry.username, registry.password),
                             concurrency=concurrency)


async def read_registry(registry: RegistryServer, repository: str) -> str:
    async with transport(registry) as client:
        return (await OciStore(client).read(OciReference(repository, "v1"))).sha256


async def read_file(root: Path, item: InventoryItem) -> str:
    return (await FilesystemStore(root, "{tenant}/{app}/{version}/app.jar").read(item)).sha256


def rss_of_check(registry: RegistryServer, root: Path, app: str) -> float:
    """Peak RSS (MiB) of a fresh process that checks one version (VmHWM: ru_maxrss survives exec)."""
    code = f"""
import asyncio, resource, sys
sys.path.insert(0, {str(ROOT)!r})
from verifier.model import ArtifactCoordinates, InventoryItem
from verifier.parity import ParityChecker
from verifier.stores.filesystem import FilesystemStore
from verifier.stores.oci import Credentials, OciStore, RegistryTransport
async def main():
    async with RegistryTransport({registry.url!r}, credentials=Credentials({registry.username!r}, {registry.password!r})) as t:
        checker = ParityChecker(FilesystemStore({str(root)!r}, "{{tenant}}/{{app}}/{{version}}/app.jar"), OciStore(t))
        r = await checker.check(InventoryItem(ArtifactCoordinates("bench", {app!r}, "1")))
        assert r.outcome.value == "match", r.detail
asyncio.run(main())
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))  # kB, this process only
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(out.strip()) / 1024


async def small_jars_per_second(registry: RegistryServer, root: Path, count: int) -> float:
    items = [InventoryItem(ArtifactCoordinates("bench", f"small{i}", "1")) for i in range(count)]
    async with transport(registry, 8) as client:
        checker = ParityChecker(FilesystemStore(root, "{tenant}/{app}/{version}/app.jar"), OciStore(client))
        semaphore = asyncio.Semaphore(8)

        async def one(item: InventoryItem) -> None:
            async with semaphore:
                result = await checker.check(item)
                assert result.outcome.value == "match", result.detail

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in items))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--small", type=int, default=400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="parity-bench-"))
    try:
        with running_registry(work / "registry") as registry:
            root = work / "store"
            print(f"building a {args.size_mb} MiB JAR and pushing it …", flush=True)
            big = build_jar(root / "bench/big/1/app.jar", args.size_mb << 20, seed=1)
            registry.push_jar_with_oras("bench/big", "v1", big)
            size = big.stat().st_size
            expected = hashlib.sha256(big.read_bytes()).hexdigest()
            digest = registry.jar_layer_digest("bench/big", "v1")
            blob_url = f"{registry.url}/v2/bench/big/blobs/{digest}"
            auth = f"{registry.username}:{registry.password}"

            shell(f"cat {big} > /dev/null")  # warm the page cache for both sides alike
            item = InventoryItem(ArtifactCoordinates("bench", "big", "1"))
            t_openssl = best_of(lambda: shell(f"openssl dgst -sha256 {big}"))
            t_ours_fs = best_of(lambda: asyncio.run(read_file(root, item)))
            t_curl = best_of(lambda: shell(f"curl -sf -u '{auth}' '{blob_url}' | openssl dgst -sha256"))
            t_ours_oci = best_of(lambda: asyncio.run(read_registry(registry, "bench/big")))
            assert asyncio.run(read_registry(registry, "bench/big")) == expected

            mb = size / 1e6
            print(f"\nlarge JAR: {size / 2**20:.0f} MiB, best of {REPEAT}")
            print(f"  openssl dgst FILE            {t_openssl:7.3f} s  {mb / t_openssl:7.0f} MB/s")
            print(f"  ours, filesystem read        {t_ours_fs:7.3f} s  {mb / t_ours_fs:7.0f} MB/s"
                  f"   ratio {t_openssl / t_ours_fs:.2f} of openssl")
            print(f"  curl | openssl dgst          {t_curl:7.3f} s  {mb / t_curl:7.0f} MB/s")
            print(f"  ours, registry read          {t_ours_oci:7.3f} s  {mb / t_ours_oci:7.0f} MB/s"
                  f"   ratio {t_curl / t_ours_oci:.2f} of curl|openssl")

            small_root = root
            for i in range(args.small):
                jar = build_jar(small_root / f"bench/small{i}/1/app.jar", 20_000, seed=100 + i)
                registry.push_jar_with_oras(f"bench/small{i}", "v1", jar)
            build_jar(root / "bench/tiny/1/app.jar", 10 << 20, seed=2)
            registry.push_jar_with_oras("bench/tiny", "v1", root / "bench/tiny/1/app.jar")

            rss_small = statistics.median(rss_of_check(registry, root, "tiny") for _ in range(3))
            rss_big = statistics.median(rss_of_check(registry, root, "big") for _ in range(3))
            print(f"\npeak RSS of one check: 10 MiB JAR {rss_small:.0f} MiB; {size / 2**20:.0f} MiB JAR "
                  f"{rss_big:.0f} MiB (difference {rss_big - rss_small:+.0f} MiB)")

            rates = [asyncio.run(small_jars_per_second(registry, root, args.small)) for _ in range(2)]
            print(f"\nsmall JARs (20 kB), both stores, concurrency 8: {max(rates):.0f} versions/s "
                  f"({args.small} versions)")
            print(f"\nhost: {resource.getpagesize()} B pages, python {sys.version.split()[0]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
