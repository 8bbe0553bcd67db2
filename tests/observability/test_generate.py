"""The committed dashboards/ and alerts/ are exactly what the generator writes (CI fails when stale)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.observability.conftest import DASHBOARDS, REPO, rule_files
from verifier.observability.generate import generate

STALE = "stale generated files: run `parity-verifier generate` (or `python -m verifier.observability.generate`) " \
        "in the repository root and commit the result"


def _committed() -> dict[str, bytes]:
    paths = [*sorted(DASHBOARDS.glob("*.json")), *rule_files()]
    return {p.relative_to(REPO).as_posix(): p.read_bytes() for p in paths}


def test_generated_files_are_byte_identical_to_the_committed_ones(tmp_path: Path) -> None:
    written = generate(tmp_path)
    generated = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in written}
    committed = _committed()
    assert sorted(generated) == sorted(committed), STALE
    different = [name for name in generated if generated[name] != committed[name]]
    assert not different, f"{STALE}: {different}"


def test_generating_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in generate(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in generate(tmp_path / "b")}
    assert first == second


def test_module_entry_point_writes_into_out_dir(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "verifier.observability.generate", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dashboards" / "parity.json").is_file()
    assert (tmp_path / "alerts" / "parity.yaml").is_file()
    assert sorted(result.stdout.split()) == sorted(str(p) for p in tmp_path.glob("*/*.*"))
