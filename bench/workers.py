"""`relay serve --workers N` (issue 16): one and two worker processes on the same load.

Each N runs under its own supervisor, on a redis-server of its own (so its commands are
its own), at the default flush, in front of the run's mock upstream. The load is the
throughput ramp's shape (streams at THROUGHPUT_TPS tokens/s each, more per step), at the
same offered rates for both N, so every row compares like with like: tokens/s
delivered, delivery lag p99, each process's CPU, relay's CPU per delivered token (the
workers' CPU together), and Redis commands per delivered token.

How the cores are used is a choice the row states (`layout`): on a machine with fewer
cores than workers plus upstream plus load generator, a second worker takes its core
from them, and tokens/s cannot double; CPU per token and how evenly the kernel spread
the connections (SO_REUSEPORT) still say what N workers would do with N cores.
- `shared`: nothing pinned; the kernel schedules every process on every core.
- `pinned`: the workers on cores 0..N-1, one each (`os.sched_setaffinity`); the rest
  unpinned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import DEFAULT_FLUSH_MS, Bench, relay_toml
from bench.processes import Child, free_port, python_child, redis_child
from bench.redis_probe import RedisProbe

Result = dict[str, Any]
Progress = Callable[[str], None]

COUNTS = (1, 2)
THROUGHPUT_TPS = 200.0
STEPS = (4_000, 8_000, 16_000, 24_000, 32_000)  # offered tokens/s, the same for every N
STEP_SECONDS = 4.0
STAGGER_S = 1.0
LAG_LIMIT_MS = 50.0
WORKERS_READY_S = 20.0


def workers(bench: Bench, say: Progress) -> Result:
    layout = os.environ.get("BENCH_WORKERS_LAYOUT", "shared")
    runs = []
    for count in COUNTS:
        redis = redis_child(f"redis-for-workers{count}", bench.run_dir)
        bench.children.append(redis)
        redis.start()
        probe = RedisProbe(redis.port)
        supervisor = _start_workers(bench, count, redis.port)
        pids = _worker_pids(supervisor.pid, count)
        if layout == "pinned":
            for core, pid in enumerate(pids):
                os.sched_setaffinity(pid, {core % (os.cpu_count() or 1)})
        watch = {f"worker{i + 1}": pid for i, pid in enumerate(pids)}
        watch |= {"upstream": bench.upstream().pid, "redis": redis.pid}
        steps = []
        for offered in STEPS:
            step = _step(bench, supervisor.port, offered, watch, probe)
            say(_line(count, step))
            steps.append(step)
            if not step["ok"]:
                break
        supervisor.stop()
        redis.stop()
        probe.close()
        runs.append({"workers": count, "steps": steps, "best": _best(steps)})
    return {
        "layout": layout,
        "runs": runs,
        "settings": {"tps_per_stream": THROUGHPUT_TPS, "seconds": STEP_SECONDS, "steps": STEPS},
    }


def _start_workers(bench: Bench, count: int, redis_port: int) -> Child:
    port = free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    config = relay_toml(port, url, DEFAULT_FLUSH_MS, bench.upstream().port)
    path = bench.run_dir / f"relay-workers{count}.toml"
    path.write_text(config)
    args = ["-m", "relay", "serve", "--config", str(path), "--workers", str(count)]
    child = python_child(f"relay-workers{count}", args, port, bench.run_dir)
    bench.children.append(child)
    child.start("/readyz")
    return child


def _worker_pids(supervisor: int, count: int) -> list[int]:
    """The worker processes, once all `count` listen on the port: the supervisor's
    children, or with one worker the process itself (`relay serve` supervises none)."""
    deadline = time.monotonic() + WORKERS_READY_S
    while time.monotonic() < deadline:
        children = _children(supervisor) if count > 1 else [supervisor]
        if len(children) == count and all(_listens(pid) for pid in children):
            return children
        time.sleep(0.1)
    raise RuntimeError(f"{count} workers did not all start within {WORKERS_READY_S:g} s")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def _listens(pid: int) -> bool:
    """Whether the process holds a listening TCP socket (its server is up)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return True
    return False


def _step(
    bench: Bench, port: int, offered: float, watch: dict[str, int], probe: RedisProbe
) -> Result:
    streams = max(1, round(offered / THROUGHPUT_TPS))
    job = {
        "kind": "streams",
        "host": "127.0.0.1",
        "port": port,
        "path": "/v1/chat/completions",
        "streams": streams,
        "tps": THROUGHPUT_TPS,
        "tokens": round(THROUGHPUT_TPS * STEP_SECONDS),
        "stagger_s": STAGGER_S,
        "grace_s": bench.sizes.grace_s,
        "watch": watch,
    }
    probe.reset()
    step = bench.loadgen(job)
    calls = probe.commandstats()
    tokens = step["tokens"]
    cpu_s = step["cpu"]["cpu_s"]
    relay_cpu_s = sum(seconds for name, seconds in cpu_s.items() if name.startswith("worker"))
    step["relay_cpu_us_per_token"] = 1e6 * relay_cpu_s / tokens if tokens else None
    step["redis_commands"] = calls
    step["redis_commands_per_token"] = sum(calls.values()) / tokens if tokens else None
    step["ok"] = step["errors"] == 0 and (step["lag_ms"]["p99"] or 0) <= LAG_LIMIT_MS
    return step


def _best(steps: list[Result]) -> Result | None:
    passing = [step for step in steps if step["ok"]]
    if not passing:
        return None
    best = max(passing, key=lambda step: step["rate"]["tokens_per_s"])
    return {
        "offered_tokens_per_s": best["offered_tokens_per_s"],
        "tokens_per_s": best["rate"]["tokens_per_s"],
        "lag_p99_ms": best["lag_ms"]["p99"],
        "relay_cpu_us_per_token": best["relay_cpu_us_per_token"],
        "redis_commands_per_token": best["redis_commands_per_token"],
        "cpu_pct": best["cpu"]["cpu_pct"],
    }


def _line(count: int, step: Result) -> str:
    cpu = " ".join(f"{name} {pct:.0f}%" for name, pct in step["cpu"]["cpu_pct"].items())
    errors = f", {step['errors']} errors" if step["errors"] else ""
    return (
        f"workers={count} offered {step['offered_tokens_per_s']:>6,.0f} tok/s: "
        f"{step['rate']['tokens_per_s']:>7,.0f} tok/s, lag p99 {step['lag_ms']['p99']:.1f} ms, "
        f"{step['relay_cpu_us_per_token']:.1f} µs relay CPU/token, "
        f"{step['redis_commands_per_token']:.2f} Redis commands/token{errors} | cpu {cpu}"
        + ("" if step["ok"] else "  <- over the limit")
    )
