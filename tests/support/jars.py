"""Real JAR files: Debian's where present, and generated ones of controlled size."""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

DEBIAN_JARS = Path("/usr/share/java")


def build_jar(path: Path, size: int = 20_000, *, seed: int = 0, main_class: str = "com.example.Main") -> Path:
    """A JAR with a manifest and one stored entry of pseudo-random bytes, about ``size`` bytes long."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    payload = max(0, size - 400)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as jar:
        jar.writestr("META-INF/MANIFEST.MF",
                     f"Manifest-Version: 1.0\r\nMain-Class: {main_class}\r\nCreated-By: parity-verifier tests\r\n\r\n")
        with jar.open("data/payload.bin", "w", force_zip64=payload > (1 << 31)) as entry:
            remaining = payload
            while remaining:
                n = min(remaining, 1 << 20)
                entry.write(rng.randbytes(n))
                remaining -= n
    return path


def jar_bytes(size: int = 20_000, *, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
        jar.writestr("data/payload.bin", random.Random(seed).randbytes(max(0, size - 300)))
    return buffer.getvalue()


def debian_jars(limit: int = 5) -> list[Path]:
    """Real-world JARs shipped by Debian, spread from the smallest to the largest (empty when none)."""
    if not DEBIAN_JARS.is_dir():
        return []
    jars = sorted((p for p in DEBIAN_JARS.glob("*.jar") if p.is_file() and not p.is_symlink()),
                  key=lambda p: p.stat().st_size)
    if len(jars) <= limit:
        return jars
    step = (len(jars) - 1) / max(1, limit - 1)
    return [jars[round(i * step)] for i in range(limit)]


def flip_byte(path: Path, offset: int | None = None) -> int:
    """Flip one byte in the middle of the file (same size). Returns the offset."""
    size = path.stat().st_size
    at = size // 2 if offset is None else offset
    with open(path, "r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return at


def truncate(path: Path, keep: int | None = None) -> None:
    size = path.stat().st_size
    os.truncate(path, size // 2 if keep is None else keep)
