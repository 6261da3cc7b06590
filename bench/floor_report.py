"""Issue 16's targets and tables, from the results of bench/floor.py's scenarios.

Each figure is a ratio to the bare pass-through (`proxy`) in the same run, or as stated.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.report import (
    NONE,
    Result,
    Row,
    _f,
    _target,
    _targets_table,
    markdown_table,
    ttft_rows,
)

RELAYS = ("relay-memory", "relay-redis")
TTFT20_LIMITS = {"relay-memory": 1.5, "relay-redis": 2.0}
BURST_TTFT_LIMIT = 1.5
CPU_LIMIT = 1.5
CORE_LAG_LIMIT_MS = 50.0


def evaluate(s: Result) -> list[Result]:
    checks: list[Callable[[Result], Result | None]] = [
        _ttft20_target,
        _burst_target,
        _cpu_target,
        _core_target,
    ]
    return [found for check in checks if (found := check(s)) is not None]


def _ratio(value: float | None, floor: float | None) -> float | None:
    return None if value is None or not floor else value / floor


def _x(ratio: float | None) -> str:
    return NONE if ratio is None else f"{ratio:.2f}x"


def _ttft20_target(s: Result) -> Result | None:
    if "ttft20" not in s:
        return None
    ratios = s["ttft20"]["ratio_to_proxy"]
    added = s["ttft20"]["added_ms"]
    parts = [
        f"{name.removeprefix('relay-')} {added[name]['p50']:.2f} ms ({_x(ratios.get(name))})"
        for name in RELAYS
    ]
    met = all((ratios.get(name) or 99) <= TTFT20_LIMITS[name] for name in RELAYS)
    return _target(
        "added TTFT p50, sequential 20-token streams: memory ≤ 1.5x, Redis ≤ 2x the proxy's",
        ", ".join(parts) + f" (proxy adds {added['proxy']['p50']:.2f} ms)",
        met,
    )


def _rows_by_target(scenario: Result) -> dict[str, Result]:
    return {row["target"]: row for row in scenario["rows"]}


def _burst_target(s: Result) -> Result | None:
    if "burst" not in s:
        return None
    rows = _rows_by_target(s["burst"])
    floor = rows["proxy"]["ttft_ms"]["p50"]
    ratios = {name: _ratio(rows[name]["ttft_ms"]["p50"], floor) for name in RELAYS}
    parts = [
        f"{name.removeprefix('relay-')} {_f(rows[name]['ttft_ms']['p50'])} ms ({_x(ratios[name])})"
        for name in RELAYS
    ]
    return _target(
        f"{s['burst']['settings']['streams']} streams started at once: TTFT p50 ≤ 1.5x the proxy's",
        ", ".join(parts) + f" (proxy {_f(floor)} ms)",
        all((ratio or 99) <= BURST_TTFT_LIMIT for ratio in ratios.values()),
    )


def _cpu_target(s: Result) -> Result | None:
    if "cpu_token" not in s:
        return None
    rows = _rows_by_target(s["cpu_token"])
    floor = rows["proxy"]["cpu_us_per_token"]
    ratios = {name: _ratio(rows[name]["cpu_us_per_token"], floor) for name in RELAYS}
    parts = [
        f"{name.removeprefix('relay-')} {_f(rows[name]['cpu_us_per_token'])} µs "
        f"({_x(ratios[name])})"
        for name in RELAYS
    ]
    return _target(
        "CPU per delivered token, one token per upstream chunk, default flush: ≤ 1.5x the proxy's",
        ", ".join(parts) + f" (proxy {_f(floor)} µs)",
        all((ratio or 99) <= CPU_LIMIT for ratio in ratios.values()),
    )


def _core_target(s: Result) -> Result | None:
    if "core1000" not in s:
        return None
    rows = _rows_by_target(s["core1000"])
    parts = [
        f"{name.removeprefix('relay-')} {_f(rows[name]['lag_ms']['p99'], 0)} ms"
        + (f" ({rows[name]['errors']} streams failed or cut)" if rows[name]["errors"] else "")
        for name in RELAYS
    ]
    met = all(
        rows[name]["errors"] == 0 and (rows[name]["lag_ms"]["p99"] or 99e9) <= CORE_LAG_LIMIT_MS
        for name in RELAYS
    )
    return _target(
        "one relay core: 1,000 streams x 50 tok/s, lag p99 ≤ 50 ms",
        ", ".join(parts) + f" (proxy {_f(rows['proxy']['lag_ms']['p99'], 0)} ms)",
        met,
    )


# --- tables -----------------------------------------------------------------------------


def sections(s: Result, pinning: str) -> list[tuple[str, str]]:
    targets = evaluate(s)
    if not targets:
        return []
    found = [("Targets (issue 16): against the bare pass-through", _targets_table(targets))]
    found[0] = (found[0][0], f"{pinning}.\n\n{found[0][1]}")
    if "ttft20" in s:
        found.append(("Sequential 20-token streams, sent at once by the upstream", _ttft20(s)))
    titles = {
        "burst": "Streams started in the same millisecond (200 tokens at 50 tok/s)",
        "cpu_token": "CPU per delivered token, one token per upstream chunk, default flush",
        "core1000": "1,000 streams x 50 tok/s, the tested process alone on its core",
    }
    for key, title in titles.items():
        if key in s:
            found.append((title, _streams_table(s[key])))
    return found


def _ttft20(s: Result) -> str:
    result = s["ttft20"]
    rows = ttft_rows(result, lambda name: _x(result["ratio_to_proxy"].get(name)))
    headers = ["path", "p50 ms", "p99 ms", "added p50", "added p99", "x proxy", "requests"]
    return markdown_table(headers, rows)


def _streams_table(scenario: Result) -> str:
    rows: list[Row] = []
    by_target = _rows_by_target(scenario)
    floor = by_target.get("proxy", {})
    for name, row in by_target.items():
        cpu = row["cpu"]["cpu_pct"]
        rows.append(
            [
                name,
                f"{row['streams']:,}",
                _f(row["ttft_ms"]["p50"]),
                _f(row["ttft_ms"]["p99"]),
                _x(_ratio(row["ttft_ms"]["p50"], floor.get("ttft_ms", {}).get("p50"))),
                _f(row["lag_ms"]["p99"]),
                _f(row["gap_ms"]["p50"]),
                _f(row["cpu_us_per_token"]),
                _x(_ratio(row["cpu_us_per_token"], floor.get("cpu_us_per_token"))),
                _f(row["rate"]["tokens_per_s"], 0),
                str(row["errors"]),
                ", ".join(f"{n} {pct:.0f}%" for n, pct in cpu.items()),
            ]
        )
    headers = ["path", "streams", "TTFT p50 ms", "TTFT p99 ms", "x proxy", "lag p99 ms"]
    headers += ["gap p50 ms", "CPU µs/token", "x proxy", "tok/s", "failed", "CPU"]
    return markdown_table(headers, rows)
