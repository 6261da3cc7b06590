"""The scenarios of issue 16: relay against the floor, the bare pass-through, in one run.

Each shape comes from an outside harness's findings, and each result is read as a ratio
to `bench/proxy.py` measured in the same run on the same upstream (the proxy and the
relays are pinned to the same core, bench/processes.py `Pinning`):
- `ttft20`: sequential 20-token streams that the upstream sends at once (all its chunks
  in one burst, so relay's first read holds the first token and more): added TTFT;
- `burst`: N streams started in the same millisecond (200 tokens at 50 tokens/s): TTFT
  p50/p99 and CPU per delivered token;
- `cpu_token`: one token per upstream chunk, default flush, a steady load: CPU per
  delivered token;
- `core1000`: 1,000 streams x 50 tokens/s with relay alone on its core: delivery lag p99.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness import MEMORY, REDIS, Bench
from bench.processes import Child
from bench.scenarios import Progress, Result, _ms, _stream_line, _targets, _ttft_job, run_streams


@dataclass(frozen=True)
class FloorSizes:
    ttft20_requests: int
    ttft20_warmup: int
    burst_streams: int
    burst_tokens: int
    burst_tps: float
    cpu_streams: int
    cpu_tps: float
    cpu_seconds: float
    core_streams: int
    core_tps: float
    core_seconds: float
    core_stagger_s: float


FLOOR_SIZES = {
    "quick": FloorSizes(
        ttft20_requests=100, ttft20_warmup=10,
        burst_streams=100, burst_tokens=200, burst_tps=50,
        cpu_streams=50, cpu_tps=200, cpu_seconds=3,
        core_streams=1000, core_tps=50, core_seconds=3, core_stagger_s=1,
    ),
    "full": FloorSizes(
        ttft20_requests=500, ttft20_warmup=50,
        burst_streams=100, burst_tokens=200, burst_tps=50,
        cpu_streams=50, cpu_tps=200, cpu_seconds=6,
        core_streams=1000, core_tps=50, core_seconds=10, core_stagger_s=2,
    ),
}  # fmt: skip

TTFT20_TOKENS = 20


def _sizes(bench: Bench) -> FloorSizes:
    return FLOOR_SIZES.get(bench.sizes.name, FLOOR_SIZES["quick"])


def _under_test(bench: Bench) -> list[tuple[str, Child]]:
    """The proxy and both relays (default flush); direct only where a scenario wants it."""
    return _targets(bench, [MEMORY, REDIS], proxy=True)[1:]


def _watched(bench: Bench, spec_name: str) -> dict[str, int]:
    """The process, its redis-server if it has one, and the upstream."""
    return bench.watch(spec_name, f"redis-for-{spec_name}")


# --- sequential 20-token streams ----------------------------------------------------------


def ttft20(bench: Bench, say: Progress) -> Result:
    sizes = _sizes(bench)
    targets = {name: {"host": "127.0.0.1", "port": c.port, "path": "/v1/chat/completions"}
               for name, c in _targets(bench, [MEMORY, REDIS], proxy=True)}  # fmt: skip
    say(f"{sizes.ttft20_requests} sequential {TTFT20_TOKENS}-token requests per target")
    result = _ttft_job(
        bench, targets, sizes.ttft20_requests, upstream_ttft_ms=0,
        tokens=TTFT20_TOKENS, warmup=sizes.ttft20_warmup,
    )  # fmt: skip
    result["ratio_to_proxy"] = _ratios(result["added_ms"])
    for name, ratio in result["ratio_to_proxy"].items():
        added = result["added_ms"][name]["p50"]
        say(f"{name}: added p50 {added:.2f} ms, {ratio:.2f}x the proxy's")
    return result


def _ratios(added: dict[str, Result]) -> dict[str, float]:
    floor = added["proxy"]["p50"]
    return {
        name: values["p50"] / floor
        for name, values in added.items()
        if name != "proxy" and floor and floor > 0
    }


# --- streams -----------------------------------------------------------------------------


def _streams_rows(
    bench: Bench, say: Progress, streams: int, tokens: int, tps: float, stagger_s: float
) -> list[Result]:
    rows = []
    for name, child in _under_test(bench):
        row = run_streams(
            bench, name, child, streams, tps, tokens / tps, stagger_s,
            watch=_watched(bench, name),
        )  # fmt: skip
        row["cpu_us_per_token"] = cpu_per_token(row, name)
        say(_stream_line(row) + f", ttft p50 {_ms(row['ttft_ms']['p50'])}")
        rows.append(row)
    return rows


def cpu_per_token(row: Result, name: str) -> float | None:
    """µs of the process's CPU per delivered token over the measured window."""
    tokens = row["tokens"]
    cpu = row["cpu"]["cpu_s"].get(name)
    return None if not tokens or cpu is None else 1e6 * cpu / tokens


def burst(bench: Bench, say: Progress) -> Result:
    """N streams whose requests leave the load generator in the same millisecond."""
    sizes = _sizes(bench)
    say(f"{sizes.burst_streams} streams at once, {sizes.burst_tokens} tokens at "
        f"{sizes.burst_tps:g} tok/s")  # fmt: skip
    rows = _streams_rows(
        bench, say, sizes.burst_streams, sizes.burst_tokens, sizes.burst_tps, stagger_s=0.0
    )
    return {"rows": rows, "settings": {"streams": sizes.burst_streams, "stagger_s": 0.0}}


def cpu_token(bench: Bench, say: Progress) -> Result:
    """A steady load at one token per upstream chunk, default flush."""
    sizes = _sizes(bench)
    tokens = round(sizes.cpu_tps * sizes.cpu_seconds)
    say(f"{sizes.cpu_streams} streams x {sizes.cpu_tps:g} tok/s, one token per chunk")
    rows = _streams_rows(bench, say, sizes.cpu_streams, tokens, sizes.cpu_tps, stagger_s=1.0)
    return {"rows": rows, "settings": {"streams": sizes.cpu_streams, "tps": sizes.cpu_tps}}


def core1000(bench: Bench, say: Progress) -> Result:
    """1,000 streams x 50 tokens/s with the tested process alone on its core."""
    sizes = _sizes(bench)
    tokens = round(sizes.core_tps * sizes.core_seconds)
    say(f"{sizes.core_streams} streams x {sizes.core_tps:g} tok/s, {bench.pinning.note}")
    rows = _streams_rows(
        bench, say, sizes.core_streams, tokens, sizes.core_tps, sizes.core_stagger_s
    )
    return {"rows": rows, "settings": {"streams": sizes.core_streams, "tps": sizes.core_tps}}


FLOOR_SCENARIOS = {"ttft20": ttft20, "burst": burst, "cpu_token": cpu_token, "core1000": core1000}
