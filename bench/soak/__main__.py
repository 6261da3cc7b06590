"""`python -m bench.soak [--minutes N] [--clients N] [--no-doc]`: the soak (`make soak`).

Starts the deployment, runs the load and the faults for the given time, reads every
session back, checks it all, prints the report, rewrites docs/reliability.md's generated
section, and exits 1 if anything was violated (2 if it could not run at all).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from bench.soak import report
from bench.soak.checks import check_run
from bench.soak.deployment import Deployment, NginxMissing, find_nginx
from bench.soak.faults import inject, watch_memory
from bench.soak.load import Load, LoadSettings
from bench.soak.logscan import count_levels, tracebacks_in
from bench.soak.traces import SoakRun, Violation
from relay.vocabulary import session_tag

RUN_DIR = Path(__file__).resolve().parent.parent / "results" / "soak"
WIND_DOWN_S = 45.0  # of the time given: sessions in flight end, then every one is read back
SETTLE_AT_ONCE = 8
RSS_BOUND_MIB = 256


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        find_nginx()
    except NginxMissing as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    settings = LoadSettings(concurrency=args.clients, model=args.model, seed=args.seed)
    run = soak(settings, max(30.0, args.minutes * 60 - WIND_DOWN_S), args.rss_mib * 2**20)
    violations, explained = check_run(run)
    rows = report.figures(run, violations, explained)
    print(report.text(rows, violations, run.started_at))
    _save(run, violations)
    _write_log_lines(violations, run.started_at, RUN_DIR / "violations.txt")
    if not args.no_doc:
        report.write_doc(report.markdown(rows, violations, run.started_at))
        print(f"updated {report.DOC_PATH}")
    print(f"logs, results.json and violations.txt (with their sessions' log lines): {RUN_DIR}")
    return 1 if violations else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="the whole run (10)")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients (10)")
    parser.add_argument("--model", default=LoadSettings.model, help="the sessions' mock model")
    parser.add_argument("--seed", type=int, default=0, help="the load's random choices")
    parser.add_argument("--rss-mib", type=int, default=RSS_BOUND_MIB, help="relay RSS bound")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/reliability.md")
    return parser


def soak(settings: LoadSettings, load_s: float, rss_bound: int) -> SoakRun:
    deployment = Deployment(RUN_DIR)
    run = SoakRun(0.0, 0.0, load_s, settings.concurrency, settings.model, rss_bound, _commit())
    print(f"soak: starting redis, mock upstream, 2 relays, nginx in {RUN_DIR}", flush=True)
    try:
        deployment.start()
        run.started_at = time.time()
        asyncio.run(_drive(deployment, settings, run))
    finally:
        run.exit_statuses = deployment.stop()
    run.ended_at = time.time()
    for log in deployment.logs():
        content = log.read_text(errors="replace")
        run.tracebacks += tracebacks_in(content, log.name)
        run.error_lines[log.name] = count_levels(content, "ERROR")
    run.error_lines = {name: n for name, n in run.error_lines.items() if n}
    return run


async def _drive(deployment: Deployment, settings: LoadSettings, run: SoakRun) -> None:
    load = Load(deployment.base_url, deployment.instances, deployment.relay_addresses, settings)
    stop_watch = asyncio.Event()
    watch = asyncio.create_task(watch_memory(deployment, run.rss, stop_watch))
    print(f"soak: {run.load_s:.0f} s of load through {deployment.base_url}", flush=True)
    try:
        await asyncio.gather(
            load.run(run.started_at + run.load_s),
            inject(deployment, run.started_at, run.load_s, run.faults, _say),
        )
        print(f"soak: reading back {len(load.sessions)} sessions", flush=True)
        await load.settle_all(SETTLE_AT_ONCE)
    finally:
        stop_watch.set()
        await watch
    run.sessions, run.answers, run.bad_bodies = load.sessions, load.answers, load.bad_bodies


def _say(line: str) -> None:
    print("  " + line, flush=True)


def _save(run: SoakRun, violations: Sequence[Violation]) -> None:
    """Everything recorded, for a closer look than the report's."""
    results = {"run": run, "violations": violations}
    path = RUN_DIR / "results.json"
    path.write_bytes(msgspec.json.encode(results))


def _write_log_lines(violations: Sequence[Violation], started_at: float, path: Path) -> None:
    """Each violation, and the lines of every log that name its session (by its tag)."""
    logs = {log.name: log.read_text(errors="replace").splitlines() for log in RUN_DIR.glob("*.log")}
    with path.open("w") as out:
        for violation in violations:
            out.write(report.violation_line(violation, started_at) + "\n")
            if violation.subject.startswith("s_"):
                tag = session_tag(violation.subject)
                for name, lines in sorted(logs.items()):
                    out.writelines(f"    {name}: {line}\n" for line in lines if tag in line)


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "relay"], cwd=root, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.decode().strip() + (" (relay/ modified)" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    sys.exit(main())
