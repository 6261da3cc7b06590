"""Catch-up (issue 16): a finished session read from the start by new SSE subscribers,
at 5,000 and 10,000 events, from memory and from Redis, against the floor of the same
read: XRANGE of the session's entries by redis-py, in a process of its own.

Two baselines, both one XRANGE of every entry of the session's log with redis-py's
asyncio client on uvloop (the load generator's loop), each timed from the command sent
to the reply parsed: `redis-py` as redis-py returns it by default (a tuple and a dict
per entry), and `raw`, the reply as hiredis parses it (what relay's store decodes).
Neither sends anything on to a client: relay's figure minus the raw one is what relay
adds to the Redis read itself (HTTP, the session lookup, decoding, framing, writes).

`python -m bench.catchup` runs the baseline job: a JSON job on stdin
(`{"port", "key", "repeats"}`), its result as JSON on stdout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bench import stats
from bench.harness import MEMORY_NO_COALESCING, REDIS_NO_COALESCING, Bench
from relay.store.redis.keys import session_keys

Result = dict[str, Any]
Progress = Callable[[str], None]

EVENTS = (5_000, 10_000)
REPEATS = 50


def catchup(bench: Bench, say: Progress) -> Result:
    rows = []
    for events in EVENTS:
        for spec in (MEMORY_NO_COALESCING, REDIS_NO_COALESCING):
            row = _replay_row(bench, spec.name, events)
            probe = bench.redis_probe(spec)
            if probe is not None:
                key = session_keys(row["session_id"]).log
                row["baseline"] = baseline(probe.port, key, REPEATS)
            say(_line(row))
            rows.append(row)
    return {"rows": rows, "settings": {"repeats": REPEATS, "events": list(EVENTS)}}


def _replay_row(bench: Bench, name: str, events: int) -> Result:
    spec = MEMORY_NO_COALESCING if name == MEMORY_NO_COALESCING.name else REDIS_NO_COALESCING
    child = bench.relay(spec)
    job = {
        "kind": "replay",
        "host": "127.0.0.1",
        "port": child.port,
        "tokens": events - 4,  # status connecting, status generating, tokens, usage, done
        "repeats": REPEATS,
        "watch": bench.watch(child.name),
    }
    row = bench.loadgen(job)
    row["target"] = name
    return row


def baseline(port: int, key: str, repeats: int) -> Result:
    """The XRANGE baselines, in a process of their own (see the module docstring)."""
    job = msgspec.json.encode({"port": port, "key": key, "repeats": repeats})
    completed = subprocess.run(
        [sys.executable, "-m", "bench.catchup"], input=job, capture_output=True, timeout=300
    )
    if completed.returncode != 0:
        raise RuntimeError(f"XRANGE baseline failed:\n{completed.stderr.decode()[-2000:]}")
    result: Result = msgspec.json.decode(completed.stdout)
    return result


def _line(row: Result) -> str:
    text = (
        f"{row['target']:<22} {row['received_events']:>6,} events "
        f"({row['bytes'] / 1024:.0f} KiB): p50 {row['replay_ms']['p50']:.1f} ms, "
        f"p99 {row['replay_ms']['p99']:.1f} ms"
    )
    if "baseline" in row:
        base = row["baseline"]
        text += (
            f" | XRANGE alone: redis-py {base['redis_py_ms']['p50']:.1f} ms, "
            f"raw {base['raw_ms']['p50']:.1f} ms"
        )
    return text


# --- the baseline job ----------------------------------------------------------------------


async def _timed(read: Callable[[], Awaitable[Any]], repeats: int) -> tuple[list[float], int]:
    times: list[float] = []
    count = 0
    for _ in range(repeats):
        started = time.perf_counter()
        entries = await read()
        times.append(time.perf_counter() - started)
        count = len(entries)
    return times, count


async def _baseline_job(job: dict[str, Any]) -> Result:
    import redis.asyncio

    client = redis.asyncio.Redis(host="127.0.0.1", port=job["port"])
    raw = redis.asyncio.Redis(host="127.0.0.1", port=job["port"])
    raw.set_response_callback("XRANGE", lambda response, **options: response)
    try:
        await client.ping(), await raw.ping()  # connected before the clock runs
        parsed_s, entries = await _timed(lambda: client.xrange(job["key"]), job["repeats"])
        raw_s, _ = await _timed(lambda: raw.xrange(job["key"]), job["repeats"])
    finally:
        await client.aclose()
        await raw.aclose()
    return {
        "entries": entries,
        "redis_py_ms": stats.summary(parsed_s, 1000),
        "raw_ms": stats.summary(raw_s, 1000),
    }


def main() -> None:
    import uvloop

    job = msgspec.json.decode(sys.stdin.buffer.read())
    sys.stdout.buffer.write(msgspec.json.encode(uvloop.run(_baseline_job(job))))


if __name__ == "__main__":
    main()
