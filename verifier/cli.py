"""`parity-verifier run | check | gate | generate` (the CLI is a contract: DESIGN.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .config import Settings, load_settings
from .errors import ConfigError, SourceUnavailable
from .logs import configure
from .model import CheckResult, Outcome

log = logging.getLogger("verifier")

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with one line, as argparse does, plus a hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="parity-verifier",
                     description="Prove that an OCI registry holds the same JAR bytes as the filesystem store.")
    parser.add_argument("--version", action="version", version=f"parity-verifier {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="the sidecar: sample continuously, serve metrics, status and gate")
    run.add_argument("-c", "--config", required=True, type=Path)

    check = commands.add_parser("check", help="one pass over the whole inventory now, recorded in the ledger")
    check.add_argument("-c", "--config", required=True, type=Path)
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--output", type=Path, help="write the report to this file instead of stdout")

    gate = commands.add_parser("gate", help="the cutover verdict from the ledger (exit 0 GO, 1 NO-GO, 3 INCONCLUSIVE)")
    gate.add_argument("-c", "--config", required=True, type=Path)
    gate.add_argument("--format", choices=("text", "json"), default="text")

    generate = commands.add_parser("generate", help="write dashboards/*.json and alerts/*.yaml")
    generate.add_argument("--out", type=Path, default=Path("."))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        from .observability.generate import generate

        for path in generate(args.out):
            print(path)
        return EXIT_OK
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"parity-verifier: configuration error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    configure(settings.logging.format, settings.logging.level)
    try:
        if args.command == "check":
            return asyncio.run(check_command(settings, args.format, args.output))
        if args.command == "gate":
            return asyncio.run(gate_command(settings, args.format))
        from .service import run_service

        return asyncio.run(run_service(settings))
    except ConfigError as exc:  # found while starting (e.g. an unreadable cosign key)
        for problem in exc.problems:
            print(f"parity-verifier: configuration error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except SourceUnavailable as exc:
        print(f"parity-verifier: cannot run: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


async def check_all(settings: Settings, *, progress: bool = False) -> list[CheckResult]:
    """Every inventory version checked once, in inventory order, with bounded concurrency, recorded."""
    from .inventory import inventory_source
    from .ledger import open_ledger
    from .wiring import make_checker, make_transport

    items = await inventory_source(settings).load()
    async with open_ledger(settings) as ledger, make_transport(settings) as transport:
        await ledger.observe(items)
        checker = make_checker(settings, transport)
        results: list[CheckResult | None] = [None] * len(items)
        pending = iter(enumerate(items))  # shared by the workers: each version is taken once
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="version", file=sys.stderr, dynamic_ncols=True)

        async def worker() -> None:
            for index, item in pending:
                result = await checker.check(item)
                await ledger.record(result)
                results[index] = result
                if bar is not None:
                    bar.update(1)
                    if result.outcome is not Outcome.MATCH:
                        bar.set_postfix_str(f"last problem: {result.coordinates} {result.outcome.value}")

        try:
            # a fixed pool of workers, not a task per version: memory stays flat for 100 000 versions
            try:
                async with asyncio.TaskGroup() as workers:
                    for _ in range(min(settings.schedule.concurrency, len(items))):
                        workers.create_task(worker())
            except BaseExceptionGroup as group:  # e.g. the ledger became unwritable: say that, once
                raise group.exceptions[0] from None
            return [r for r in results if r is not None]
        finally:
            if bar is not None:
                bar.close()


async def check_command(settings: Settings, fmt: str, output: Path | None) -> int:
    from .report import as_json, as_text

    results = await check_all(settings, progress=sys.stderr.isatty())
    if not results:
        log.warning("the inventory is empty: nothing to check")
    text = as_json(results) if fmt == "json" else as_text(results)
    if output is not None:
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)  # never a half-written report
    else:
        sys.stdout.write(text)
    return EXIT_OK if all(r.outcome is Outcome.MATCH for r in results) else EXIT_FAIL


async def gate_command(settings: Settings, fmt: str) -> int:
    import datetime as dt
    import json

    from .gate import evaluate
    from .ledger import open_ledger

    async with open_ledger(settings) as ledger:
        verdict = await evaluate(ledger, None, settings, dt.datetime.now(dt.UTC))
    if fmt == "json":
        sys.stdout.write(json.dumps(verdict.as_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(verdict.render_text())
    return verdict.exit_code
