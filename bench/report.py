"""Results → the issue's targets (met or not), tables, charts, and the generated part of
docs/performance.md.

Every number in the tables comes from a results file: the doc's section between
`<!-- bench:begin -->` and `<!-- bench:end -->` is rewritten whole, never edited by hand.
`python -m bench.report bench/results/full.json [--doc]` redoes it from a saved run.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

Result = dict[str, Any]
Row = list[str]
NONE = "\N{EN DASH}"  # a table cell with nothing measured


# --- the targets ----------------------------------------------------------------


def evaluate(results: Result) -> list[Result]:
    """One entry per target of issue 5: the goal, what was measured, met or not."""
    s = results["scenarios"]
    checks: list[Callable[[Result], Result | None]] = [
        _ttft_target("relay-memory", 1.0, 3.0),
        _ttft_target("relay-redis", 2.0, 5.0),
        _ttft_vs_proxy,
        _gap_target,
        _coalesced_lag_target,
        _throughput_target,
        _cpu_target,
        _fanout_target,
        _replay_target,
        _catchup_target,
        _workers_target,
        _idle_target,
    ]
    return [found for check in checks if (found := check(s)) is not None]


def _target(goal: str, measured: str, met: bool) -> Result:
    return {"goal": goal, "measured": measured, "met": met}


def _ttft_target(name: str, p50: float, p99: float) -> Callable[[Result], Result | None]:
    def check(s: Result) -> Result | None:
        if "ttft" not in s:
            return None
        added = s["ttft"]["added_ms"][name]
        store = name.removeprefix("relay-")
        return _target(
            f"added TTFT, {store} store: p50 ≤ {p50:g} ms, p99 ≤ {p99:g} ms",
            f"p50 {added['p50']:.2f} ms, p99 {added['p99']:.2f} ms",
            added["p50"] <= p50 and added["p99"] <= p99,
        )

    return check


def _ttft_vs_proxy(s: Result) -> Result | None:
    if "ttft" not in s:
        return None
    added = s["ttft"]["added_ms"]
    proxy = added["proxy"]["p50"]
    ratios = {name: added[name]["p50"] / proxy for name in ("relay-memory", "relay-redis")}
    return _target(
        "relay's added TTFT within 2x the bare proxy's (p50)",
        ", ".join(f"{_store(name)} {ratio:.1f}x" for name, ratio in ratios.items())
        + f" (proxy adds {proxy:.2f} ms)",
        all(ratio <= 2 for ratio in ratios.values()),
    )


def _lag_rows(s: Result, streams: int, flush: int) -> list[Result]:
    if "lag" not in s:
        return []
    return [
        row
        for row in s["lag"]["rows"]
        if row["streams"] == streams and row["flush_ms"] == flush and row["target"] != "direct"
    ]


def _gap_target(s: Result) -> Result | None:
    rows = _lag_rows(s, 100, 0)
    if not rows:
        return None
    return _target(
        "100 streams x 50 tok/s, coalescing off: inter-token gap p99 ≤ 25 ms",
        ", ".join(f"{_store(row['target'])} {row['gap_ms']['p99']:.1f} ms" for row in rows),
        all(row["gap_ms"]["p99"] <= 25 and not row["errors"] for row in rows),
    )


def _coalesced_lag_target(s: Result) -> Result | None:
    rows = _lag_rows(s, 1000, 25)
    if not rows:
        return None
    return _target(
        "1,000 streams x 50 tok/s, default flush (25 ms): lag p99 ≤ 35 ms",
        ", ".join(f"{_store(row['target'])} {_lag_text(row)}" for row in rows),
        all(row["lag_ms"]["p99"] <= 35 and not row["errors"] for row in rows),
    )


def _lag_text(row: Result) -> str:
    text = f"{row['lag_ms']['p99']:.0f} ms"
    if row["errors"]:
        text += f" ({row['errors']} of {row['streams']} streams failed or were cut)"
    return text


def _best_relays(s: Result) -> dict[str, Result | None]:
    if "throughput" not in s:
        return {}
    targets = s["throughput"]["targets"]
    return {
        name: targets[name]["best"] for name in ("relay-memory", "relay-redis") if name in targets
    }


def _throughput_target(s: Result) -> Result | None:
    best = _best_relays(s)
    if not best:
        return None
    rates = {name: (b["tokens_per_s"] if b else 0.0) for name, b in best.items()}
    return _target(
        "≥ 100,000 delivered tokens/s per process (1 token per chunk, default flush)",
        ", ".join(f"{_store(name)} {rate:,.0f} tok/s" for name, rate in rates.items()),
        all(rate >= 100_000 for rate in rates.values()),
    )


def _cpu_target(s: Result) -> Result | None:
    best = _best_relays(s)
    if not best:
        return None
    cpu = {name: (b["cpu_us_per_token"] if b else math.inf) for name, b in best.items()}
    return _target(
        "≤ 10 µs of relay CPU per delivered token",
        ", ".join(f"{_store(name)} {value:.0f} µs" for name, value in cpu.items()),
        all(value <= 10 for value in cpu.values()),
    )


def _fanout_target(s: Result) -> Result | None:
    if "fanout" not in s:
        return None
    rows = s["fanout"]["rows"]
    return _target(
        "fan-out, 1 session to 1,000 subscribers: lag p99 ≤ 60 ms",
        ", ".join(f"{_store(row['target'])} {row['lag_ms']['p99']:.0f} ms" for row in rows),
        all(row["lag_ms"]["p99"] <= 60 and row["complete"] == row["subscribers"] for row in rows),
    )


def _replay_target(s: Result) -> Result | None:
    if "replay" not in s:
        return None
    limits = {"memory": 20.0, "redis": 50.0}
    rows = s["replay"]["rows"]
    return _target(
        "10,000-event replay: ≤ 20 ms from memory, ≤ 50 ms from Redis (p50)",
        ", ".join(f"{_store(row['target'])} {row['replay_ms']['p50']:.1f} ms" for row in rows),
        all(row["replay_ms"]["p50"] <= limits[_store(row["target"])] for row in rows),
    )


def _catchup_target(s: Result) -> Result | None:
    """Issue 16: the 10,000-event catch-up from Redis (bench/catchup.py)."""
    rows = [row for row in s.get("catchup", {}).get("rows", []) if row["events"] == 10_000]
    redis = [row for row in rows if "baseline" in row]
    if not redis:
        return None
    p50, raw = redis[0]["replay_ms"]["p50"], redis[0]["baseline"]["raw_ms"]["p50"]
    return _target(
        "10,000-event replay from Redis ≤ 10 ms p50 (issue 16)",
        f"{p50:.1f} ms (one XRANGE of its entries alone: {raw:.1f} ms)",
        p50 <= 10.0,
    )


def _workers_target(s: Result) -> Result | None:
    """Issue 16: `--workers 2` against one worker (bench/workers.py)."""
    runs = {run["workers"]: run["best"] for run in s.get("workers", {}).get("runs", [])}
    if not runs.get(1) or not runs.get(2):
        return None
    one, two = runs[1]["tokens_per_s"], runs[2]["tokens_per_s"]
    return _target(
        "`--workers 2` ≥ 1.8x the tokens/s of one worker at lag p99 ≤ 50 ms (issue 16)",
        f"{two:,.0f} against {one:,.0f} tokens/s: {two / one:.2f}x "
        f"({s['workers']['layout']} cores; see the capacity model)",
        two >= 1.8 * one,
    )


def _idle_target(s: Result) -> Result | None:
    if "idle" not in s:
        return None
    rows = s["idle"]["rows"]
    return _target(
        "≤ 32 KiB per idle SSE subscriber",
        ", ".join(
            f"{_store(row['target'])} {row['bytes_per_subscriber'] / 1024:.1f} KiB "
            f"at {row['subscribers']:,}"
            for row in rows
        ),
        all(row["bytes_per_subscriber"] <= 32 * 1024 for row in rows),
    )


def _store(name: str) -> str:
    return name.removeprefix("relay-").split("-")[0]


# --- tables -----------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE
    return f"{value:,.{digits}f}"


def _cpu(row: Result, *names: str) -> str:
    pct = row["cpu"]["cpu_pct"]
    return ", ".join(f"{name} {pct[name]:.0f}%" for name in names if name in pct)


def sections(results: Result) -> list[tuple[str, str]]:
    """(title, markdown table) for every scenario that ran, targets first."""
    s = results["scenarios"]
    found = [("Targets (issue 5)", _targets_table(results["targets"]))]
    builders: list[tuple[str, str, Callable[[Result], str]]] = [
        ("ttft", "Time to first token (ms)", _ttft_table),
        ("lag", "Delivery lag and inter-token gap (ms)", _lag_table),
        ("throughput", "Most tokens/s before lag p99 passes 50 ms", _throughput_table),
        ("fanout", "Fan-out: one session, many SSE subscribers", _fanout_table),
        (
            "replay",
            "Resume catch-up: a finished session replayed to a new subscriber",
            _replay_table,
        ),
        ("catchup", "Catch-up from the start, against XRANGE alone", _catchup_table),
        ("workers", "`relay serve --workers N` on Redis, the same offered load", _workers_table),
        ("idle", "Idle SSE subscribers", _idle_table),
        ("idle_lag", "Streams while idle SSE subscribers are held", _idle_lag_table),
        ("profile", "Where relay's CPU goes (py-spy)", _profile_table),
    ]
    for key, title, build in builders:
        if key in s:
            found.append((title, build(s[key])))
    if "lag" in s or "fanout" in s:
        found.append(("Redis: commands and connections", _redis_table(s)))
    return found + _floor_sections(results)


def _floor_sections(results: Result) -> list[tuple[str, str]]:
    """Issue 16's targets and tables (bench/floor_report.py builds on this module)."""
    from bench import floor_report

    pinning = results["meta"].get("pinning", {}).get("note", "pinning not recorded")
    return floor_report.sections(results["scenarios"], pinning)


def _targets_table(targets: list[Result]) -> str:
    rows = [[t["goal"], t["measured"], "met" if t["met"] else "**not met**"] for t in targets]
    return markdown_table(["target", "measured", ""], rows)


def ttft_rows(ttft: Result, ratio: Callable[[str], str] | None = None) -> list[Row]:
    """A row per path of a TTFT result: p50, p99, what it adds over `direct`, the `ratio`
    column where given (bench/floor_report.py's "x proxy"), requests."""
    return [
        _ttft_row(name, summary, ttft["added_ms"].get(name), ratio)
        for name, summary in ttft["summary_ms"].items()
    ]


def _ttft_row(
    name: str, summary: Result, added: Result | None, ratio: Callable[[str], str] | None
) -> Row:
    row = [name, _f(summary["p50"], 2), _f(summary["p99"], 2)]
    row += [_f(added[q], 2) if added else NONE for q in ("p50", "p99")]
    if ratio is not None:
        row.append(ratio(name) if added else NONE)
    return row + [str(summary["n"])]


def _ttft_table(ttft: Result) -> str:
    headers = ["path", "p50", "p99", "added p50", "added p99", "requests"]
    table = markdown_table(headers, ttft_rows(ttft))
    thinking = ttft.get("thinking_upstream")
    if thinking is None:
        return table
    return (
        f"{table}\n\nThe same with an upstream that takes "
        f"{thinking['settings']['upstream_ttft_ms']} ms to its first token: the "
        "session's creation and its `connecting` status are stored while the upstream "
        "thinks, so what relay adds is what it does after the first token arrives (every "
        "path, direct included, takes longer after a wait than back to back).\n\n"
        + _ttft_table(thinking)
    )


def _lag_table(lag: Result) -> str:
    rows = []
    for row in lag["rows"]:
        flush = NONE if row["flush_ms"] is None else ("off" if row["flush_ms"] == 0 else "25 ms")
        rows.append(
            [
                f"{row['streams']:,}",
                row["target"],
                flush,
                _f(row["lag_ms"]["p50"]),
                _f(row["lag_ms"]["p99"]),
                _f(row["gap_ms"]["p50"]),
                _f(row["gap_ms"]["p99"]),
                _f(row["rate"]["tokens_per_s"], 0),
                f"{row['errors']}" + (f" ({row['unfinished']} cut)" if row["unfinished"] else ""),
                _cpu(row, row["target"], "upstream", "loadgen"),
            ]
        )
    headers = ["streams", "path", "flush", "lag p50", "lag p99", "gap p50", "gap p99"]
    headers += ["tok/s", "failed streams", "CPU"]
    return markdown_table(headers, rows)


def _throughput_table(throughput: Result) -> str:
    rows = []
    for name, target in throughput["targets"].items():
        best = target["best"]
        failed = next((step for step in target["steps"] if not step["ok"]), None)
        over = (
            f"{failed['offered_tokens_per_s']:,.0f} (lag p99 {_f(failed['lag_ms']['p99'], 0)} ms)"
            if failed
            else "none tried"
        )
        if best is None:
            rows.append([name, NONE, NONE, NONE, NONE, NONE, over])
            continue
        cpu = best["cpu_pct"]
        cpus = ", ".join(
            f"{n} {cpu[n]:.0f}%"
            for n in (name, "upstream", "loadgen")
            if n in cpu and n != "direct"
        )
        rows.append(
            [
                name,
                _f(best["tokens_per_s"], 0),
                _f(best["frames_per_s"], 0),
                _f(best["lag_p99_ms"]),
                _f(best["cpu_us_per_token"]),
                cpus,
                over,
            ]
        )
    headers = ["path", "tokens/s", "events/s", "lag p99 ms", "CPU µs/token", "CPU"]
    headers += ["first offered tok/s over the limit"]
    return markdown_table(headers, rows)


def _fanout_table(fanout: Result) -> str:
    rows = [
        [
            row["target"],
            f"{row['complete']:,} of {row['subscribers']:,}",
            _f(row["lag_ms"]["p50"]),
            _f(row["lag_ms"]["p99"]),
            _f(row["lag_ms"]["max"]),
            f"{row['connected_s']:.2f} s",
            _cpu(row, row["target"], "loadgen"),
        ]
        for row in fanout["rows"]
    ]
    headers = ["store", "subscribers complete", "lag p50 ms", "lag p99 ms", "lag max ms"]
    return markdown_table(headers + ["all connected after", "CPU"], rows)


def _replay_table(replay: Result) -> str:
    rows = [
        [
            row["target"],
            f"{row['received_events']:,}",
            f"{row['bytes'] / 1024:,.0f} KiB",
            _f(row["replay_ms"]["p50"]),
            _f(row["replay_ms"]["p99"]),
            str(row["replay_ms"]["n"]),
            f"{row['generated_s']:.2f} s",
        ]
        for row in replay["rows"]
    ]
    headers = ["store", "events", "size", "p50 ms", "p99 ms", "replays", "time to write it"]
    return markdown_table(headers, rows)


def _catchup_table(catchup: Result) -> str:
    headers = ["store", "events", "size", "p50 ms", "p99 ms", "replays"]
    headers += ["XRANGE alone: redis-py p50 ms", "raw p50 ms", "relay / raw XRANGE"]
    rows = []
    for row in catchup["rows"]:
        base = row.get("baseline")
        raw = base["raw_ms"]["p50"] if base else None
        rows.append(
            [
                row["target"],
                f"{row['received_events']:,}",
                f"{row['bytes'] / 1024:.0f} KiB",
                _f(row["replay_ms"]["p50"]),
                _f(row["replay_ms"]["p99"]),
                str(row["replay_ms"]["n"]),
                _f(base["redis_py_ms"]["p50"]) if base else NONE,
                _f(raw),
                f"{row['replay_ms']['p50'] / raw:.1f}x" if raw else NONE,
            ]
        )
    return markdown_table(headers, rows)


def _workers_table(workers: Result) -> str:
    headers = ["workers", "offered tok/s", "delivered tok/s", "lag p99 ms", "errors"]
    headers += ["relay CPU per token", "Redis commands per token", "CPU"]
    rows = []
    for run in workers["runs"]:
        for step in run["steps"]:
            cpu = ", ".join(f"{name} {pct:.0f}%" for name, pct in step["cpu"]["cpu_pct"].items())
            rows.append(
                [
                    str(run["workers"]),
                    f"{step['offered_tokens_per_s']:,.0f}",
                    f"{step['rate']['tokens_per_s']:,.0f}",
                    _f(step["lag_ms"]["p99"]),
                    str(step["errors"]),
                    f"{_f(step['relay_cpu_us_per_token'])} µs",
                    _f(step["redis_commands_per_token"], 2),
                    cpu,
                ]
            )
    return markdown_table(headers, rows)


def _idle_table(idle: Result) -> str:
    rows = [
        [
            row["target"],
            f"{row['subscribers']:,}",
            str(row["sessions"]),
            f"{row['bytes_per_subscriber'] / 1024:.1f} KiB",
            f"{row['relay_rss_before_mib']:.0f} → {row['relay_rss_after_mib']:.0f} MiB",
            f"{row['connect_s']:.1f} s",
            f"{row['still_open']:,}",
        ]
        for row in idle["rows"]
    ]
    headers = ["store", "subscribers", "sessions", "RSS per subscriber", "relay RSS"]
    return markdown_table(headers + ["connect time", "still open at the end"], rows)


def _idle_lag_table(idle_lag: Result) -> str:
    rows = [
        [
            row["target"],
            f"{row['idle']['subscribers']:,} on {row['idle']['sessions']} sessions",
            f"{row['streams']:,} x {row['tps']:g} tok/s",
            _f(row["lag_ms"]["p50"]),
            _f(row["lag_ms"]["p99"]),
            _f(row["lag_ms"]["max"]),
            _f(row["gap_ms"]["p99"]),
            f"{row['rate']['tokens_per_s']:,.0f}",
            str(row["errors"]),
            _cpu(row, row["target"], "upstream", "loadgen"),
        ]
        for row in idle_lag["rows"]
    ]
    headers = ["store", "idle subscribers", "streams", "lag p50 ms", "lag p99 ms", "lag max ms"]
    return markdown_table(headers + ["gap p99 ms", "tok/s", "failed streams", "CPU"], rows)


def _redis_table(s: Result) -> str:
    rows = []
    found = [(f"lag, {r['streams']:,} streams", r) for r in s.get("lag", {}).get("rows", [])]
    found += [
        (f"fan-out, {r['subscribers']:,} subscribers", r)
        for r in s.get("fanout", {}).get("rows", [])
    ]
    for label, row in found:
        redis = row.get("redis")
        if redis is None:
            continue
        calls = sorted(redis["commands"].items(), key=lambda item: -item[1])[:5]
        rows.append(
            [
                f"{label}, {row['target']}",
                _f(redis["commands_per_delivered_frame"], 2),
                _f(redis["commands_per_stored_event"], 2),
                ", ".join(f"{name} {count:,}" for name, count in calls),
                str(redis["max_connections"]),
            ]
        )
    headers = ["run", "commands per delivered event", "commands per stored event"]
    return markdown_table(headers + ["top commands", "peak connections"], rows)


def _profile_table(profile: Result) -> str:
    parts = []
    for run in profile["runs"]:
        rows = [[layer, f"{share:.0f}%"] for layer, share in run["layers"].items()]
        parts.append(
            f"{run['target']}, {run['load']}:\n\n"
            + markdown_table(["layer", "share of samples"], rows)
        )
        top = [[name, f"{share:.1f}%"] for name, share in run["top_self"][:10]]
        parts.append("Top functions by own time:\n\n" + markdown_table(["function", "self"], top))
    return "\n\n".join(parts)


def text_table(results: Result) -> str:
    out = []
    for title, table in sections(results):
        out.append(f"\n## {title}\n\n{table}")
    return "\n".join(out)


# --- the doc ------------------------------------------------------------------------------


def doc_section(results: Result) -> str:
    meta = results["meta"]
    sizes = meta["sizes"]
    lines = [
        BEGIN,
        "<!-- Generated by bench/report.py from bench/results/"
        f"{sizes['name']}.json: do not edit by hand. -->",
        "",
        f"Measured {meta['date']} with `make bench{'-full' if sizes['name'] == 'full' else ''}` "
        f"({sizes['name']} sizes) in {meta['seconds'] / 60:.1f} min, on {meta['cpu']} "
        f"({meta['cores']} cores, {meta['memory_gib']} GiB), Linux {meta['kernel']}, "
        f"Python {meta['python']}, redis-server {meta['redis_server']}, "
        + ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
        + f", relay at {meta.get('git', 'unknown commit')}.",
    ]
    if sizes["reduced"]:
        lines += ["", f"Reduced sizes: {sizes['reduced']}."]
    for title, table in sections(results):
        lines += ["", f"### {title}", "", table]
    lines += ["", END]
    return "\n".join(lines)


def write_doc(results: Result, path: Path) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} … {END} section to rewrite")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + doc_section(results) + tail)


# --- charts -------------------------------------------------------------------------------


def write_charts(results: Result, directory: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["scenarios"]
    written = []
    for key, draw in (("ttft", _ttft_chart), ("lag", _lag_chart), ("throughput", _ramp_chart)):
        if key not in s:
            continue
        figure = draw(plt, s[key], results["meta"])
        path = directory / f"{prefix}-{key}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def _log_axis(axis: Any) -> None:
    """A log axis labelled 1, 2, 5, 10, 20 … in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,g}"))
    axis.set_minor_formatter(NullFormatter())


def _caption(meta: Result) -> str:
    return (
        f"{meta['cpu']}, {meta['cores']} cores, Python {meta['python']} ({meta['sizes']['name']})"
    )


def _ttft_chart(plt: Any, ttft: Result, meta: Result) -> Any:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, points in ttft["cdf_ms"].items():
        quantiles = [i / (len(points) - 1) for i in range(len(points))]
        axes.plot(points, quantiles, label=name)
    axes.set_xscale("log")
    _log_axis(axes.xaxis)
    axes.set_xlabel("time to first token, ms (log)")
    axes.set_ylabel("fraction of requests")
    axes.set_title(f"Time to first token\n{_caption(meta)}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return figure


def _lag_chart(plt: Any, lag: Result, meta: Result) -> Any:
    rows = lag["rows"]
    labels = [
        f"{row['streams']} x {row['target']}" + (" (off)" if row["flush_ms"] == 0 else "")
        for row in rows
    ]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    positions = range(len(rows))
    axes.barh(
        [p + 0.2 for p in positions], [row["lag_ms"]["p99"] for row in rows], 0.4, label="p99"
    )
    axes.barh(
        [p - 0.2 for p in positions], [row["lag_ms"]["p50"] for row in rows], 0.4, label="p50"
    )
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    _log_axis(axes.xaxis)
    axes.set_xlabel("delivery lag, ms (log)")
    axes.set_title(
        f"Delivery lag at {lag['settings']['tps']:g} tokens/s per stream\n{_caption(meta)}"
    )
    axes.grid(True, axis="x", which="both", alpha=0.3)
    axes.legend()
    return figure


def _ramp_chart(plt: Any, throughput: Result, meta: Result) -> Any:
    figure, (lag_axes, cpu_axes) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, target in throughput["targets"].items():
        steps = target["steps"]
        offered = [step["offered_tokens_per_s"] for step in steps]
        process = "upstream" if name == "direct" else name
        lag_axes.plot(offered, [step["lag_ms"]["p99"] for step in steps], "o-", label=name)
        cpu = [step["cpu"]["cpu_pct"].get(process, 0.0) for step in steps]
        cpu_axes.plot(offered, cpu, "o-", label=f"{process}")
    lag_axes.axhline(throughput["settings"]["lag_limit_ms"], color="grey", linestyle="--")
    for axes in (lag_axes, cpu_axes):
        axes.set_xscale("log")
        _log_axis(axes.xaxis)
        axes.set_xlabel("offered tokens/s (log)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    lag_axes.set_yscale("log")
    _log_axis(lag_axes.yaxis)
    lag_axes.set_ylabel("lag p99, ms (log)")
    cpu_axes.set_ylabel("CPU of the process in the path, % of one core")
    cpu_axes.set_ylim(0, 110)
    figure.suptitle(f"Throughput ramp, one token per upstream chunk\n{_caption(meta)}")
    return figure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--doc", action="store_true", help="rewrite docs/performance.md")
    args = parser.parse_args(argv)
    results: Result = msgspec.json.decode(args.results.read_bytes())
    results["targets"] = evaluate(results)
    print(text_table(results))
    write_charts(results, args.results.parent, results["meta"]["sizes"]["name"])
    if args.doc:
        write_doc(results, DOC_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
