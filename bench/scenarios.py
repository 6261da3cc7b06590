"""The scenarios of issue 5. Each takes the `Bench`, runs load generator jobs against
the processes it needs, and returns what it measured (JSON-ready)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bench.catchup import catchup
from bench.harness import (
    MEMORY,
    MEMORY_NO_COALESCING,
    REDIS,
    REDIS_NO_COALESCING,
    Bench,
    RelaySpec,
)
from bench.processes import Child
from bench.profile import start_recording, summarize
from bench.redis_probe import RedisProbe
from bench.workers import workers

CHAT_PATH = "/v1/chat/completions"
LAG_LIMIT_MS = 50.0  # the throughput ramp stops at the first step whose lag p99 passes it
THROUGHPUT_STAGGER_S = 1.0
THINKING_UPSTREAM_MS = 20  # the second TTFT job's upstream delay before its first token
STEADY_STREAMS = 100  # the profile's and idle_lag's streams: the lag scenario's first size

Result = dict[str, Any]
Progress = Callable[[str], None]


def address(child: Child) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": child.port, "path": CHAT_PATH}


def _targets(bench: Bench, specs: list[RelaySpec], proxy: bool) -> list[tuple[str, Child]]:
    """(name, process) pairs: the upstream direct, the proxy, then relays."""
    found = [("direct", bench.upstream())]
    if proxy:
        found.append(("proxy", bench.proxy()))
    return found + [(spec.name, bench.relay(spec)) for spec in specs]


def _spec_of(name: str) -> RelaySpec | None:
    specs = (MEMORY, MEMORY_NO_COALESCING, REDIS, REDIS_NO_COALESCING)
    return next((spec for spec in specs if spec.name == name), None)


# --- time to first token ----------------------------------------------------------------


def ttft(bench: Bench, say: Progress) -> Result:
    """Added TTFT against an upstream that answers at once (every step of relay's path is
    on the clock) and against one that takes THINKING_UPSTREAM_MS to its first token (the
    steps that overlap the upstream's own wait are not: what relay adds in practice)."""
    sizes = bench.sizes
    paths = _targets(bench, [MEMORY, REDIS], proxy=True)
    targets = {name: address(child) for name, child in paths}
    say(f"{sizes.ttft_requests} sequential requests per target, round-robin")
    result = _ttft_job(bench, targets, sizes.ttft_requests, upstream_ttft_ms=0)
    thinking = sizes.ttft_requests // 5
    say(f"{thinking} more per target, the upstream {THINKING_UPSTREAM_MS} ms to its first token")
    result["thinking_upstream"] = _ttft_job(
        bench, targets, thinking, upstream_ttft_ms=THINKING_UPSTREAM_MS
    )
    return result


def _ttft_job(
    bench: Bench,
    targets: dict[str, Result],
    requests: int,
    *,
    upstream_ttft_ms: int,
    tokens: int = 4,
    warmup: int | None = None,
) -> Result:
    model = f"mock:tokens={tokens},tps=0,ttft_ms={upstream_ttft_ms}"
    job = {
        "kind": "ttft",
        "targets": targets,
        "requests": requests,
        "warmup": bench.sizes.ttft_warmup if warmup is None else warmup,
        "tokens": tokens,
        "upstream_ttft_ms": upstream_ttft_ms,
    }
    result = bench.loadgen(job)
    summaries = result["summary_ms"]
    direct = summaries["direct"]
    result["added_ms"] = {
        name: {key: summaries[name][key] - direct[key] for key in ("p50", "p90", "p99")}
        for name in summaries
        if name != "direct"
    }
    result["settings"] = {
        "model": model,
        "upstream_ttft_ms": upstream_ttft_ms,
        "request": "POST /v1/chat/completions stream=true, keep-alive, one at a time",
        "measured_to": "the first chunk with non-empty delta.content",
    }
    return result


# --- concurrent streams -----------------------------------------------------------------


def run_streams(
    bench: Bench,
    name: str,
    child: Child,
    streams: int,
    tps: float,
    seconds: float,
    stagger: float,
    *,
    watch: dict[str, int] | None = None,
) -> Result:
    job = {
        "kind": "streams",
        **address(child),
        "streams": streams,
        "tps": tps,
        "tokens": round(tps * seconds),
        "stagger_s": stagger,
        "grace_s": bench.sizes.grace_s,
        "watch": watch or bench.watch(*([child.name] if name != "direct" else [])),
    }
    spec = _spec_of(name)
    probe = bench.redis_probe(spec) if spec else None
    if probe is None:
        result = bench.loadgen(job)
    else:
        probe.reset()
        with probe.sampling() as peak:
            result = bench.loadgen(job)
        result["redis"] = redis_usage(probe, peak["max_connections"], result["frames"])
    result["target"] = name
    result["flush_ms"] = spec.flush_ms if spec else None
    if spec is not None and result["errors"]:
        # Cut streams' generations go on inside relay (as they should): start afresh.
        bench.relay(spec, fresh=True)
    return result


def redis_usage(probe: RedisProbe, max_connections: int, delivered_frames: int) -> Result:
    calls = probe.commandstats()
    total = sum(calls.values())
    # Each stored event is one XADD inside the append script.
    stored = calls.get("xadd", 0)
    return {
        "commands": calls,
        "total_commands": total,
        "stored_events": stored,
        "delivered_frames": delivered_frames,
        "commands_per_delivered_frame": total / delivered_frames if delivered_frames else None,
        "commands_per_stored_event": total / stored if stored else None,
        "max_connections": max_connections,
    }


def lag(bench: Bench, say: Progress) -> Result:
    sizes = bench.sizes
    rows = []
    specs = [MEMORY, MEMORY_NO_COALESCING, REDIS, REDIS_NO_COALESCING]
    for streams in sizes.lag_streams:
        everything = sizes.lag_large_all or streams < max(sizes.lag_streams)
        chosen = specs if everything else [MEMORY, REDIS]
        for name, child in _targets(bench, chosen, proxy=everything):
            row = run_streams(
                bench, name, child, streams, sizes.lag_tps, sizes.lag_seconds, sizes.lag_stagger_s
            )
            say(_stream_line(row))
            rows.append(row)
    return {
        "rows": rows,
        "settings": {
            "tps": sizes.lag_tps,
            "seconds": sizes.lag_seconds,
            "stagger_s": sizes.lag_stagger_s,
            "request": "POST /v1/chat/completions stream=true, one connection per stream",
        },
    }


def _stream_line(row: Result) -> str:
    lag, gap, cpu = row["lag_ms"], row["gap_ms"], row["cpu"]["cpu_pct"]
    cpus = " ".join(f"{name} {pct:.0f}%" for name, pct in cpu.items())
    errors = f", {row['errors']} errors" if row["errors"] else ""
    return (
        f"{row['target']:<22} {row['streams']:>5} streams x {row['tps']:g} tok/s: "
        f"lag p50 {_ms(lag['p50'])} p99 {_ms(lag['p99'])}, gap p99 {_ms(gap['p99'])}, "
        f"{row['rate']['tokens_per_s']:,.0f} tok/s{errors} | cpu {cpus}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


# --- the most tokens/s one process sustains ---------------------------------------------


def throughput(bench: Bench, say: Progress) -> Result:
    sizes = bench.sizes
    specs = [MEMORY, REDIS] if sizes.name == "quick" else [MEMORY, MEMORY_NO_COALESCING, REDIS]
    out: Result = {
        "settings": {
            "tps_per_stream": sizes.throughput_tps,
            "seconds": sizes.throughput_seconds,
            "first_step": sizes.throughput_start,
            "step_factor": sizes.throughput_factor,
            "lag_limit_ms": LAG_LIMIT_MS,
        },
        "targets": {},
    }
    relay_limit = 0.0
    for name, child in _targets(bench, specs, proxy=sizes.name == "full")[::-1]:
        # Relays first: in a quick pass direct only goes to twice the highest relay step.
        ceiling = 2 * relay_limit if sizes.name == "quick" and name == "direct" else None
        steps = _ramp(bench, name, child, say, ceiling)
        if name.startswith("relay"):
            relay_limit = max([relay_limit] + [s["offered_tokens_per_s"] for s in steps])
        passing = [step for step in steps if step["ok"]]
        best = max(passing, key=lambda step: step["rate"]["tokens_per_s"]) if passing else None
        out["targets"][name] = {"steps": steps, "best": _best(best, name)}
    return out


def _ramp(
    bench: Bench, name: str, child: Child, say: Progress, ceiling: float | None
) -> list[Result]:
    """Steps of more and more streams until lag p99 passes the limit (or `ceiling`)."""
    sizes = bench.sizes
    steps: list[Result] = []
    offered = float(sizes.throughput_start)
    while offered <= min(sizes.throughput_max, ceiling or sizes.throughput_max):
        streams = max(1, round(offered / sizes.throughput_tps))
        step = run_streams(
            bench,
            name,
            child,
            streams,
            sizes.throughput_tps,
            sizes.throughput_seconds,
            THROUGHPUT_STAGGER_S,
        )
        step["ok"] = step["errors"] == 0 and (step["lag_ms"]["p99"] or 0) <= LAG_LIMIT_MS
        say(_stream_line(step) + ("" if step["ok"] else "  <- over the limit"))
        steps.append(step)
        if not step["ok"]:
            break
        offered *= sizes.throughput_factor
    return steps


def _best(step: Result | None, name: str) -> Result | None:
    if step is None:
        return None
    cpu_s = step["cpu"]["cpu_s"]
    process = name if name != "direct" else "upstream"
    tokens = step["tokens"]
    return {
        "streams": step["streams"],
        "offered_tokens_per_s": step["offered_tokens_per_s"],
        "tokens_per_s": step["rate"]["tokens_per_s"],
        "frames_per_s": step["rate"]["frames_per_s"],
        "lag_p99_ms": step["lag_ms"]["p99"],
        "cpu_us_per_token": 1e6 * cpu_s.get(process, 0.0) / tokens if tokens else None,
        "cpu_pct": step["cpu"]["cpu_pct"],
    }


# --- fan-out ----------------------------------------------------------------------------


def fanout(bench: Bench, say: Progress) -> Result:
    sizes = bench.sizes
    rows = []
    tps = sizes.lag_tps
    for spec in (MEMORY, REDIS):
        child = bench.relay(spec)
        job = {
            "kind": "fanout",
            "host": "127.0.0.1",
            "port": child.port,
            "subscribers": sizes.fanout_subscribers,
            "tokens": round(tps * sizes.fanout_seconds),
            "tps": tps,
            "ttft_ms": max(3000, 4 * sizes.fanout_subscribers),
            "watch": bench.watch(child.name),
        }
        probe = bench.redis_probe(spec)
        if probe is None:
            row = bench.loadgen(job)
        else:
            probe.reset()
            with probe.sampling() as peak:
                row = bench.loadgen(job)
            row["redis"] = redis_usage(probe, peak["max_connections"], row["frames"])
        row["target"] = spec.name
        say(
            f"{spec.name}: {row['subscribers']} subscribers ({row['complete']} complete), "
            f"lag p50 {_ms(row['lag_ms']['p50'])} p99 {_ms(row['lag_ms']['p99'])}"
        )
        rows.append(row)
    return {"rows": rows, "settings": {"tps": tps, "seconds": sizes.fanout_seconds}}


# --- resume catch-up --------------------------------------------------------------------


def replay(bench: Bench, say: Progress) -> Result:
    sizes = bench.sizes
    rows = []
    for spec in (MEMORY_NO_COALESCING, REDIS_NO_COALESCING):
        child = bench.relay(spec)
        job = {
            "kind": "replay",
            "host": "127.0.0.1",
            "port": child.port,
            # status connecting, status generating, the tokens, usage, done
            "tokens": sizes.replay_events - 4,
            "repeats": sizes.replay_repeats,
            "watch": bench.watch(child.name),
        }
        row = bench.loadgen(job)
        row["target"] = spec.name
        say(
            f"{spec.name}: {row['received_events']} events ({row['bytes'] / 1024:.0f} KiB) "
            f"replayed in p50 {_ms(row['replay_ms']['p50'])} p99 {_ms(row['replay_ms']['p99'])}"
        )
        rows.append(row)
    return {"rows": rows, "settings": {"repeats": sizes.replay_repeats}}


# --- idle subscribers -------------------------------------------------------------------


def idle(bench: Bench, say: Progress) -> Result:
    sizes = bench.sizes
    rows = []
    for spec, child in _fresh_idle_relays(bench):
        job = {
            "kind": "idle",
            "host": "127.0.0.1",
            "port": child.port,
            "relay_pid": child.pid,
            "subscribers": sizes.idle_subscribers,
            "sessions": sizes.idle_sessions,
            "warmup": 200,
            "settle_s": 2.0,
        }
        row = bench.loadgen(job)
        row["target"] = spec.name
        say(
            f"{spec.name}: {row['subscribers']} idle subscribers on {row['sessions']} sessions, "
            f"{row['bytes_per_subscriber'] / 1024:.1f} KiB each "
            f"(RSS {row['relay_rss_before_mib']:.0f} -> {row['relay_rss_after_mib']:.0f} MiB)"
        )
        rows.append(row)
    return {"rows": rows}


def idle_lag(bench: Bench, say: Progress) -> Result:
    """The lag scenario's 100 streams while the idle scenario's subscribers are held
    open, on fresh relays, for longer than a heartbeat (relay's default 15 s): the idle
    connections' feeds and pings share the loop with the live streams."""
    sizes = bench.sizes
    rows = []
    for spec, child in _fresh_idle_relays(bench):
        job = {
            "kind": "held_streams",
            **address(child),
            "subscribers": sizes.idle_subscribers,
            "sessions": sizes.idle_sessions,
            "settle_s": 1.0,
            "streams": STEADY_STREAMS,
            "tps": sizes.lag_tps,
            "tokens": round(sizes.lag_tps * sizes.idle_lag_seconds),
            "stagger_s": sizes.lag_stagger_s,
            "grace_s": sizes.grace_s,
            "watch": bench.watch(child.name),
        }
        row = bench.loadgen(job)
        row["target"] = spec.name
        say(f"{_stream_line(row)} | {row['idle']['subscribers']:,} idle subscribers held")
        rows.append(row)
    return {"rows": rows, "settings": {"seconds": sizes.idle_lag_seconds}}


def _fresh_idle_relays(bench: Bench) -> Iterator[tuple[RelaySpec, Child]]:
    """A freshly started relay for each store the idle scenarios run on: a measurement
    of memory, or of what open connections cost, must not inherit a grown heap."""
    for store in bench.sizes.idle_stores:
        spec = MEMORY if store == "memory" else REDIS
        yield spec, bench.relay(spec, fresh=True)


# --- profile ----------------------------------------------------------------------------


def profile(bench: Bench, say: Progress) -> Result:
    """py-spy on each relay while it serves 100 streams at the lag scenario's pace."""
    sizes = bench.sizes
    runs = []
    for spec in (MEMORY, REDIS):
        child = bench.relay(spec)
        output = bench.run_dir / f"profile-{spec.name}.txt"
        seconds = sizes.lag_seconds + sizes.lag_stagger_s
        recorder = start_recording(child.pid, seconds, output)
        row = run_streams(
            bench, spec.name, child, STEADY_STREAMS, sizes.lag_tps, sizes.lag_seconds, 1.0
        )
        _, errors = recorder.communicate(timeout=60)
        if recorder.returncode != 0 or not output.exists():
            raise RuntimeError(f"py-spy failed: {errors.decode()[-1000:]}")
        found = summarize(output.read_text())
        load = f"{STEADY_STREAMS} streams x {sizes.lag_tps:g} tok/s, default flush"
        runs.append({"target": spec.name, "load": load, "lag_ms": row["lag_ms"], **found})
        top = ", ".join(f"{name} {share:.0f}%" for name, share in list(found["layers"].items())[:3])
        say(f"{spec.name}: {found['samples']} samples; {top}")
    return {"runs": runs}


def _floor_scenarios() -> dict[str, Callable[[Bench, Progress], Result]]:
    """Issue 16's scenarios against the bare pass-through (bench/floor.py)."""
    from bench.floor import FLOOR_SCENARIOS  # it builds on this module

    return dict(FLOOR_SCENARIOS)


SCENARIOS: dict[str, Callable[[Bench, Progress], Result]] = {
    "idle": idle,  # first, on fresh relays: later scenarios grow the heap
    "idle_lag": idle_lag,  # fresh relays too
    "ttft": ttft,
    "lag": lag,
    "fanout": fanout,
    "replay": replay,
    "catchup": catchup,
    "throughput": throughput,
    "workers": workers,
    "profile": profile,
}
# Issue 16: relay against the floor (bench/floor.py).
SCENARIOS.update(_floor_scenarios())
