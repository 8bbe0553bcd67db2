"""The demo: a local registry and filesystem store seeded with real JARs, then `parity-verifier check`.

    python scripts/demo.py            seed demo/, check (all match), plant three faults, check again
    python scripts/demo.py --serve [--port 9464]
                                      start the registry on demo/ again and run the sidecar against it

The demo registry runs only while the script does (on a new port each time); demo/parity.yaml is
rewritten at each start to point at it. `gate` works on demo/ at any time (it reads the ledger only).

Everything lives under ./demo (delete it to start over). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.jars import build_jar, debian_jars, flip_byte  # noqa: E402
from tests.support.registry import RegistryServer, running_registry  # noqa: E402

DEMO = ROOT / "demo"
CLI = [sys.executable, "-m", "verifier"]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def app_name(jar: Path) -> str:
    stem = re.sub(r"-\d[\w.]*$", "", jar.stem.lower())
    return re.sub(r"[^a-z0-9]+", "-", stem).strip("-") or "app"


def seed(registry: RegistryServer) -> list[dict]:
    store = DEMO / "store"
    rows = []

    def add(tenant: str, app: str, version: str, jar: Path) -> None:
        target = store / tenant / app / version / "app.jar"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jar, target)
        registry.push_jar_with_oras(f"{tenant}/{app}", f"v{version}", target)
        rows.append({"tenant": tenant, "app": app, "version": version,
                     "sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "size": target.stat().st_size})
        print(f"  {tenant}/{app} {version}: {target.stat().st_size:>10,} bytes  ({jar.name})")

    for jar in debian_jars(6):  # real-world JARs shipped by Debian
        add("acme", app_name(jar), "1.0.0", jar)
    generated = DEMO / "generated"
    for version, size in (("1.0.0", 60_000), ("1.1.0", 2_000_000), ("2.0.0", 24_000_000)):
        add("globex", "orders", version, build_jar(generated / f"orders-{version}.jar", size, seed=len(rows)))
    for version in ("3.1.4", "3.2.0"):
        add("initech", "tps-reports", version, build_jar(generated / f"tps-{version}.jar", 300_000,
                                                         seed=len(rows) + 7))
    return rows


def write_config(registry: RegistryServer, port: int = 9464) -> Path:
    (DEMO / "registry-password").write_text(registry.password + "\n")
    config = {
        "inventory": {"source": "file", "path": "versions.yaml"},
        "filesystem": {"root": "store", "path": "{tenant}/{app}/{version}/app.jar"},
        "registry": {"url": registry.url, "username": registry.username, "password_file": "registry-password",
                     "timeout_seconds": 30},
        "ledger": {"path": "ledger.sqlite"},
        "server": {"listen": f"127.0.0.1:{port}"},
        "schedule": {"inventory_refresh": "10s", "coverage_window": "5m", "concurrency": 4},
        "gate": {"window": "1h"},
    }
    path = DEMO / "parity.yaml"
    path.write_text("# written by scripts/demo.py at each start: the demo registry's port changes every time\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


def check(config: Path, fmt: str = "text") -> int:
    return subprocess.call([*CLI, "check", "-c", str(config), "--format", fmt], cwd=ROOT)


def plant_faults(registry: RegistryServer) -> list[str]:
    planted = []
    digest = registry.jar_layer_digest("globex/orders", "v1.1.0")
    flip_byte(registry.blob_file(digest))
    planted.append("globex/orders 1.1.0: one byte flipped in the registry's stored blob")
    (DEMO / "store/initech/tps-reports/3.2.0/app.jar").unlink()
    planted.append("initech/tps-reports 3.2.0: the file deleted from the filesystem store")
    flip_byte(DEMO / "store/globex/orders/2.0.0/app.jar")
    planted.append("globex/orders 2.0.0: one byte flipped in the file on disk")
    return planted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="run the sidecar against the demo stores")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PARITY_DEMO_PORT", "9464")),
                        help="the sidecar's port with --serve (default 9464, or $PARITY_DEMO_PORT)")
    args = parser.parse_args()

    if args.serve:
        if not (DEMO / "versions.yaml").exists():
            print("no demo/ yet: run `make demo` first", file=sys.stderr)
            return 2
        with running_registry(DEMO / "registry") as registry:
            config = write_config(registry, args.port)
            say(f"the sidecar: http://127.0.0.1:{args.port}/status  (/metrics, /gate); registry {registry.url}; "
                "Ctrl-C stops")
            with contextlib.suppress(KeyboardInterrupt):
                return subprocess.call([*CLI, "run", "-c", str(config)], cwd=ROOT)
        return 0

    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    with running_registry(DEMO / "registry") as registry:
        say(f"seeding a filesystem store and a registry ({registry.url}) with the same real JARs")
        rows = seed(registry)
        (DEMO / "versions.yaml").write_text(yaml.safe_dump(rows, sort_keys=False))
        config = write_config(registry)

        say(f"parity-verifier check -c {config.relative_to(ROOT)}   (both stores identical)")
        first = check(config)
        if first != 0:
            print(f"unexpected: the clean stores did not all match (exit {first})", file=sys.stderr)
            return 1

        say("planting faults")
        for line in plant_faults(registry):
            print(f"  {line}")
        say(f"parity-verifier check -c {config.relative_to(ROOT)}   (after the faults)")
        second = check(config)
        say("done")
        print(f"  clean run exit code {first}; run with planted faults exit code {second} (1 = non-matches found)")
        print("  the demo registry has stopped with this script; `make serve` starts it again and runs the")
        print("  sidecar on these stores: http://127.0.0.1:9464/status (PARITY_DEMO_PORT=9465 make serve for another port)")
        print("  `.venv/bin/parity-verifier gate -c demo/parity.yaml` gives the cutover verdict from the ledger")
        return 0 if second == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
