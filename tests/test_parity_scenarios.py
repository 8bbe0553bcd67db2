"""Every scenario of the parity core against the real distribution registry and a real filesystem store.

Each test asserts the outcome, the faults and `wrong_side`: what an operator reads in the report.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tracemalloc

import pytest

from tests.conftest import Stores, item
from tests.support.jars import debian_jars, flip_byte, truncate
from tests.support.registry import Layer, tar_wrapped
from verifier.model import Fault, Outcome, WrongSide
from verifier.parity import ParityChecker


def sha(path: os.PathLike[str] | str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


async def test_identical_jar_in_both_stores_matches(stores: Stores, checker: ParityChecker) -> None:
    c, jar = stores.dual_write("orders", "1.4.2")
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MATCH
    assert result.faults == [] and result.wrong_side is None and result.detail is None
    assert result.filesystem.sha256 == result.oci.sha256 == sha(jar)
    assert result.filesystem.path == f"{c.tenant}/orders/1.4.2/app.jar"
    assert result.oci.reference == f"{c.tenant}/orders:v1.4.2"
    assert result.oci.layer_size == result.oci.size == jar.stat().st_size
    assert result.oci.manifest_digest.startswith("sha256:")


async def test_debian_jars_match(stores: Stores, checker: ParityChecker) -> None:
    assert debian_jars(), "no jars in /usr/share/java: .ci/run installs Debian's libcommons-lang3-java"
    for index, jar in enumerate(debian_jars(3)):
        c = stores.coordinates(f"debian{index}", "1.0")
        stores.put_file(c, jar)
        stores.push(c, jar)
        result = await checker.check(item(c))
        assert result.outcome is Outcome.MATCH, (jar, result.detail)
        assert result.oci.sha256 == sha(jar)


async def test_byte_flip_in_the_file_blames_the_filesystem(stores: Stores, checker: ParityChecker) -> None:
    c, jar = stores.dual_write("billing")
    flip_byte(stores.file_path(c))
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.FILESYSTEM
    assert result.faults == [Fault.FILESYSTEM_JAR_CORRUPT]
    assert result.filesystem.size == result.oci.size  # same size: only the hash tells
    assert result.oci.sha256 == sha(jar)
    assert "CRC" in result.detail and "restore" in result.detail


async def test_byte_flip_in_the_registry_blob_blames_the_registry(stores: Stores, checker: ParityChecker) -> None:
    c, jar = stores.dual_write("payments")
    blob = stores.registry.blob_file(stores.registry.jar_layer_digest(stores.repository(c), "v1.0.0"))
    flip_byte(blob)
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.OCI
    assert result.faults == [Fault.OCI_BLOB_DIGEST_MISMATCH]
    assert result.oci.layer_digest == "sha256:" + sha(jar)  # the descriptor is right, the bytes are not
    assert result.oci.sha256 != sha(jar) and result.filesystem.sha256 == sha(jar)
    assert "re-push" in result.detail


async def test_truncated_registry_blob_blames_the_registry(stores: Stores, checker: ParityChecker) -> None:
    c, jar = stores.dual_write("ledger")
    truncate(stores.registry.blob_file(stores.registry.jar_layer_digest(stores.repository(c), "v1.0.0")))
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.OCI
    assert Fault.OCI_BLOB_SIZE_MISMATCH in result.faults and Fault.OCI_BLOB_DIGEST_MISMATCH in result.faults
    assert result.oci.size == jar.stat().st_size // 2


async def test_tag_pointing_at_another_jar_is_a_mismatch_of_unknown_side(stores: Stores, checker: ParityChecker
                                                                         ) -> None:
    c, jar = stores.dual_write("search")
    other = stores.jar("other.jar")
    stores.push(c, other)  # the tag was overwritten with a different, intact upload
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.UNKNOWN
    assert result.faults == [Fault.STORES_DIFFER]
    assert result.oci.sha256 == sha(other)


async def test_inventory_digest_decides_which_side_is_wrong(stores: Stores, checker: ParityChecker) -> None:
    c, jar = stores.dual_write("search")
    stores.push(c, stores.jar("other.jar"))
    result = await checker.check(item(c, sha256=sha(jar).upper()))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.OCI
    assert result.faults == [Fault.INVENTORY_DIGEST_MISMATCH]


async def test_inventory_digest_differing_from_two_equal_stores(stores: Stores, checker: ParityChecker) -> None:
    c, _ = stores.dual_write("notes")
    result = await checker.check(item(c, sha256="0" * 64))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.UNKNOWN
    assert result.faults == [Fault.INVENTORY_DIGEST_MISMATCH]


async def test_missing_in_the_registry(stores: Stores, checker: ParityChecker) -> None:
    c = stores.coordinates("gap")
    stores.put_file(c, stores.jar("gap.jar"))
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISSING_OCI
    assert result.wrong_side is None
    assert result.faults == [Fault.OCI_MANIFEST_UNKNOWN]
    assert result.filesystem.sha256 is not None and result.oci.sha256 is None and result.oci.size is None


async def test_missing_tag_in_a_known_repository(stores: Stores, checker: ParityChecker) -> None:
    stores.dual_write("gap", "1.0.0")
    c = stores.coordinates("gap", "2.0.0")
    stores.put_file(c, stores.jar("gap2.jar"))
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISSING_OCI
    assert result.faults == [Fault.OCI_MANIFEST_UNKNOWN]


async def test_blob_lost_from_registry_storage_is_missing_oci(stores: Stores, checker: ParityChecker) -> None:
    c, _ = stores.dual_write("lost")
    blob = stores.registry.blob_file(stores.registry.jar_layer_digest(stores.repository(c), "v1.0.0"))
    shutil.rmtree(blob.parent)
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISSING_OCI
    assert result.faults == [Fault.OCI_BLOB_UNKNOWN]


async def test_missing_on_disk(stores: Stores, checker: ParityChecker) -> None:
    c, _ = stores.dual_write("disk")
    stores.file_path(c).unlink()
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISSING_FILESYSTEM
    assert result.faults == [Fault.FILESYSTEM_MISSING]
    assert result.wrong_side is None
    assert result.oci.sha256 is not None and result.filesystem.sha256 is None


async def test_missing_in_both(stores: Stores, checker: ParityChecker) -> None:
    result = await checker.check(item(stores.coordinates("ghost")))
    assert result.outcome is Outcome.MISSING_BOTH
    assert set(result.faults) == {Fault.FILESYSTEM_MISSING, Fault.OCI_MANIFEST_UNKNOWN}
    assert result.wrong_side is None


async def test_manifest_with_several_layers_picks_the_jar(stores: Stores, checker: ParityChecker) -> None:
    c = stores.coordinates("multi")
    jar = stores.jar("multi.jar")
    stores.put_file(c, jar)
    stores.registry.push_manifest(stores.repository(c), "v1.0.0", [
        Layer(b"release notes\n", "text/plain", {"org.opencontainers.image.title": "NOTES.txt"}),
        Layer(jar.read_bytes(), "application/java-archive", {"org.opencontainers.image.title": "app.jar"}),
        Layer(b"{}", "application/vnd.example.sbom+json", {"org.opencontainers.image.title": "sbom.json"}),
    ])
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MATCH
    assert result.oci.sha256 == sha(jar)


async def test_two_jar_layers_are_ambiguous(stores: Stores, checker: ParityChecker) -> None:
    c = stores.coordinates("twojars")
    jar = stores.jar("a.jar")
    stores.put_file(c, jar)
    stores.registry.push_manifest(stores.repository(c), "v1.0.0", [
        Layer(jar.read_bytes(), "application/java-archive", {"org.opencontainers.image.title": "a.jar"}),
        Layer(stores.jar("b.jar").read_bytes(), "application/octet-stream",
              {"org.opencontainers.image.title": "b.jar"}),
    ])
    result = await checker.check(item(c))
    assert result.outcome is Outcome.ERROR
    assert result.faults == [Fault.OCI_AMBIGUOUS_LAYERS]
    assert "a.jar" in result.detail and "b.jar" in result.detail


async def test_no_jar_layer(stores: Stores, checker: ParityChecker) -> None:
    c = stores.coordinates("nojar")
    stores.put_file(c, stores.jar("nojar.jar"))
    stores.registry.push_manifest(stores.repository(c), "v1.0.0", [
        Layer(b"a", "text/plain", {"org.opencontainers.image.title": "a.txt"}),
        Layer(b"b", "text/plain", {"org.opencontainers.image.title": "b.txt"}),
    ])
    result = await checker.check(item(c))
    assert result.outcome is Outcome.ERROR
    assert result.faults == [Fault.OCI_NO_JAR_LAYER]


async def test_unsupported_layer_media_type(stores: Stores, checker: ParityChecker) -> None:
    c = stores.coordinates("zstd")
    jar = stores.jar("zstd.jar")
    stores.put_file(c, jar)
    stores.registry.push_manifest(stores.repository(c), "v1.0.0",
                                  [Layer(b"(zstd bytes)", "application/vnd.oci.image.layer.v1.tar+zstd")])
    result = await checker.check(item(c))
    assert result.outcome is Outcome.ERROR
    assert result.faults == [Fault.OCI_UNSUPPORTED_MEDIA_TYPE]


@pytest.mark.parametrize("gzipped", [True, False])
async def test_jar_inside_a_tar_layer(stores: Stores, checker: ParityChecker, gzipped: bool) -> None:
    c = stores.coordinates("scannable")
    jar = stores.jar("scannable.jar", 300_000)
    stores.put_file(c, jar)
    media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzipped else "")
    layer = tar_wrapped(jar.read_bytes(), "app/lib/scannable-1.0.jar", gzipped=gzipped,
                        extra={"app/README": b"hello\n"})
    stores.registry.push_manifest(stores.repository(c), "v1.0.0", [Layer(layer, media)])
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MATCH, result.detail
    assert result.oci.sha256 == sha(jar) and result.oci.size == jar.stat().st_size
    assert result.oci.layer_size == len(layer) and result.oci.layer_digest == Layer(layer).digest
    assert result.oci.member == "app/lib/scannable-1.0.jar"


async def test_tar_layer_with_a_corrupt_jar_member(stores: Stores, checker: ParityChecker) -> None:
    c = stores.coordinates("tarflip")
    jar = stores.jar("tarflip.jar", 100_000)
    stores.put_file(c, jar)
    damaged = bytearray(jar.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    # the registry's layer is self-consistent (its digest is right) but the JAR inside fails its CRC
    stores.registry.push_manifest(stores.repository(c), "v1.0.0",
                                  [Layer(tar_wrapped(bytes(damaged)), "application/vnd.oci.image.layer.v1.tar+gzip")])
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.OCI
    assert result.faults == [Fault.OCI_JAR_CORRUPT]


@pytest.mark.parametrize(
    "row",
    [
        {"path": "../../../../etc/passwd"},
        {"path": "/etc/passwd"},
        {"path": "acme/./app.jar"},
        {"version": "../../../../etc"},
    ],
    ids=["dotdot-path", "absolute-path", "dot-component", "dotdot-version"],
)
async def test_hostile_inventory_row_is_refused_without_reading(stores: Stores, checker: ParityChecker,
                                                                row: dict[str, str]) -> None:
    c = stores.coordinates("evil", row.get("version", "1.0.0"))
    result = await checker.check(item(c, path=row.get("path")))
    assert result.outcome is Outcome.ERROR
    assert result.faults == [Fault.UNSAFE_PATH]
    assert not result.filesystem.read.attempted and not result.oci.read.attempted
    assert result.filesystem.sha256 is None and result.oci.sha256 is None


async def test_symlink_escaping_the_root_is_refused(stores: Stores, checker: ParityChecker, tmp_path) -> None:
    secret = tmp_path / "outside.jar"
    secret.write_bytes(b"PK\x03\x04 not yours")
    c = stores.coordinates("link")
    target = stores.file_path(c)
    target.parent.mkdir(parents=True)
    target.symlink_to(secret)
    result = await checker.check(item(c))
    assert result.outcome is Outcome.ERROR
    assert result.faults == [Fault.UNSAFE_PATH]
    assert not result.filesystem.read.attempted


async def test_name_the_oci_grammar_rejects(stores: Stores, checker: ParityChecker) -> None:
    c = stores.coordinates("Orders With Spaces")
    result = await checker.check(item(c))
    assert result.outcome is Outcome.ERROR
    assert result.faults == [Fault.INVALID_REFERENCE]
    assert not result.oci.read.attempted


async def test_large_jar_is_hashed_in_constant_memory(stores: Stores, checker: ParityChecker) -> None:
    c, jar = stores.dual_write("huge", size=201 * 1024 * 1024)
    tracemalloc.start()
    try:
        result = await checker.check(item(c))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome is Outcome.MATCH
    assert result.filesystem.size == result.oci.size == jar.stat().st_size >= 200 * 1024 * 1024
    assert peak < 24 * 1024 * 1024, f"peak Python allocation {peak / 2**20:.1f} MiB for a 200 MiB JAR"


async def test_byte_flip_in_a_compressed_real_jar_blames_the_filesystem(stores: Stores, checker: ParityChecker
                                                                        ) -> None:
    """Debian's JARs deflate their entries: a damaged entry fails to inflate rather than its CRC."""
    jar = max(debian_jars(8), key=lambda p: p.stat().st_size)
    c = stores.coordinates("deflated", "1.0")
    stores.put_file(c, jar)
    stores.push(c, jar)
    flip_byte(stores.file_path(c))
    result = await checker.check(item(c, sha256=sha(jar)))
    assert result.outcome is Outcome.MISMATCH, result.detail
    assert result.wrong_side is WrongSide.FILESYSTEM
    assert result.faults == [Fault.FILESYSTEM_JAR_CORRUPT]


async def test_missing_file_with_a_damaged_registry_copy_does_not_advise_restoring_from_it(
        stores: Stores, checker: ParityChecker) -> None:
    c, _ = stores.dual_write("lastcopy")
    stores.file_path(c).unlink()
    flip_byte(stores.registry.blob_file(stores.registry.jar_layer_digest(stores.repository(c), "v1.0.0")))
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISSING_FILESYSTEM
    assert result.faults == [Fault.FILESYSTEM_MISSING, Fault.OCI_BLOB_DIGEST_MISMATCH]
    assert "trusted source" in result.detail and "from the registry copy" not in result.detail


async def test_a_symlink_that_stays_inside_the_root_is_followed(stores: Stores, checker: ParityChecker) -> None:
    c, jar = stores.dual_write("linked")
    shared = stores.root / "shared-blobs" / "linked.jar"
    shared.parent.mkdir()
    stores.file_path(c).rename(shared)
    stores.file_path(c).symlink_to(shared)  # a deduplicating store
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MATCH


async def test_an_intact_layer_that_is_not_a_tar_is_an_error_not_a_corruption(stores: Stores, checker: ParityChecker
                                                                               ) -> None:
    c = stores.coordinates("notatar")
    stores.put_file(c, stores.jar("notatar.jar"))
    stores.registry.push_manifest(stores.repository(c), "v1.0.0",
                                  [Layer(random.Random(5).randbytes(70_000), "application/vnd.oci.image.layer.v1.tar")])
    result = await checker.check(item(c))
    assert result.outcome is Outcome.ERROR
    assert result.faults == [Fault.OCI_UNSUPPORTED_MEDIA_TYPE]
    assert "intact but cannot be read" in result.detail


async def test_a_byte_flip_in_a_stored_tar_gz_layer_blames_the_registry(stores: Stores, checker: ParityChecker
                                                                        ) -> None:
    c = stores.coordinates("targzflip")
    jar = stores.jar("targzflip.jar", 200_000)
    stores.put_file(c, jar)
    layer = Layer(tar_wrapped(jar.read_bytes()), "application/vnd.oci.image.layer.v1.tar+gzip")
    stores.registry.push_manifest(stores.repository(c), "v1.0.0", [layer])
    flip_byte(stores.registry.blob_file(layer.digest))
    result = await checker.check(item(c))
    assert result.outcome is Outcome.MISMATCH
    assert result.wrong_side is WrongSide.OCI
    assert Fault.OCI_BLOB_DIGEST_MISMATCH in result.faults
