"""`python -m bench [--full] [--only NAME,…] [--doc]`: run the scenarios, print the table,
write bench/results/<size>.json and charts; `--full` (or `--doc`) also rewrites the
generated section of docs/performance.md."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from bench import report
from bench.harness import Bench
from bench.processes import file_limit, find_redis_server
from bench.scenarios import SCENARIOS
from bench.sizes import FULL, QUICK, Sizes

RESULTS = Path(__file__).parent / "results"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = FULL if args.full else QUICK
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        print(f"unknown scenario {unknown}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    results = run(sizes, chosen)
    json_path = RESULTS / f"{sizes.name}.json"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2))
    charts = report.write_charts(results, RESULTS, sizes.name)
    print(report.text_table(results))
    print(f"\nresults: {json_path}\ncharts: {', '.join(str(path) for path in charts)}")
    if args.full or args.doc:
        report.write_doc(results, report.DOC_PATH)
        print(f"updated {report.DOC_PATH}")
    else:
        print("docs/performance.md left as it is (make bench-full, or --doc, rewrites it)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the sizes issue 5 names")
    parser.add_argument("--only", help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--doc", action="store_true", help="rewrite docs/performance.md")
    return parser


def run(sizes: Sizes, chosen: list[str]) -> dict[str, Any]:
    run_dir = RESULTS / f"run-{sizes.name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    results: dict[str, Any] = {"meta": machine(sizes), "scenarios": {}}
    print(_header(results["meta"]), flush=True)
    bench = Bench(sizes, run_dir)
    started = time.monotonic()
    try:
        for name in chosen:
            print(f"\n[{name}]", flush=True)
            began = time.monotonic()
            results["scenarios"][name] = SCENARIOS[name](bench, _say)
            results["scenarios"][name]["seconds"] = time.monotonic() - began
    finally:
        bench.close()
    results["meta"]["seconds"] = time.monotonic() - started
    results["meta"]["relay_configs"] = bench.configs
    results["meta"]["pinning"] = bench.pinning.as_dict()
    results["meta"]["relay_event_loop"] = _relay_event_loop(run_dir)
    results["targets"] = report.evaluate(results)
    return results


def _say(line: str) -> None:
    print("  " + line, flush=True)


def machine(sizes: Sizes) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("relay", "aiohttp", "redis", "uvloop")},
        "redis_server": _redis_version(),
        "open_files_limit": file_limit(),
        "git": _git_commit(),
        "sizes": sizes.as_dict(),
    }


def _relay_event_loop(run_dir: Path) -> str:
    """What relay said it runs on (uvloop when installed, else asyncio)."""
    for log in sorted(run_dir.glob("relay-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "event loop:" in line:
                return line.partition("event loop:")[2].split("(")[0].strip()
    return "unknown"


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "relay"], cwd=root, capture_output=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return head + (" with uncommitted changes in relay/" if dirty else "")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _redis_version() -> str:
    try:
        out = subprocess.run([find_redis_server(), "--version"], capture_output=True, check=True)
    except (OSError, RuntimeError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.decode().split()[2].removeprefix("v=")


def _header(meta: dict[str, Any]) -> str:
    sizes = meta["sizes"]
    lines = [
        f"relay benchmark ({sizes['name']}) on {meta['cpu']}, {meta['cores']} cores, "
        f"Python {meta['python']}, redis-server {meta['redis_server']}",
    ]
    if sizes["reduced"]:
        lines.append(f"reduced sizes: {sizes['reduced']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
