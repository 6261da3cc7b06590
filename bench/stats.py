"""Turning timestamps into the numbers the report shows. Pure code, no I/O.

Delivery lag. The mock upstream sends token i of a stream at `start + ttft + i / tps`
by its own clock, whatever the load (it does not drift when a reader is slow). The
origin of that schedule is not visible to the client, so it is fitted: it is put where
the stream's best-served token had no lag at all. Every other token's lag is then
`receive time - (origin + i / tps)`. This leaves out one constant per stream, the
one-way latency of the fastest token, which the time-to-first-token scenario measures;
what it keeps is every delay that varies (queueing, coalescing, a busy event loop).
With fan-out one origin is fitted for all subscribers of the session, so the spread
between them counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from bench.wire import Arrival


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by the nearest-rank method; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    """Count, median, p90, p99 and max of `values`, each multiplied by `scale`."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "n": len(ordered),
        "p50": quantile(ordered, 0.5) * scale,
        "p90": quantile(ordered, 0.9) * scale,
        "p99": quantile(ordered, 0.99) * scale,
        "max": ordered[-1] * scale,
    }


def cdf_points(values: Sequence[float], scale: float = 1.0, points: int = 200) -> list[float]:
    """`points` evenly spaced quantiles, enough to draw a distribution without the data."""
    ordered = sorted(values)
    if not ordered:
        return []
    step = (len(ordered) - 1) / max(1, points - 1)
    return [ordered[round(i * step)] * scale for i in range(points)]


def schedule_origin(streams: Sequence[Sequence[Arrival]], tps: float) -> float:
    """The fitted time of token 0: the one that makes the best-served token's lag 0."""
    best = math.inf
    for stream in streams:
        last = -1
        for arrival in stream:
            last += arrival.tokens
            best = min(best, arrival.at - last / tps)
    return best


def token_lags(stream: Sequence[Arrival], tps: float, origin: float) -> list[float]:
    """The lag of every token of one stream, against the schedule that starts at `origin`."""
    lags: list[float] = []
    index = 0
    for arrival in stream:
        for i in range(index, index + arrival.tokens):
            lags.append(arrival.at - origin - i / tps)
        index += arrival.tokens
    return lags


def gaps(stream: Sequence[Arrival]) -> list[float]:
    """Time between consecutive text frames of one stream."""
    return [b.at - a.at for a, b in itertools.pairwise(stream)]


def steady_rate(streams: Sequence[Sequence[Arrival]]) -> tuple[float, float, float]:
    """(tokens/s, frames/s, seconds) while every stream was running at once.

    The window runs from the last stream's first frame to the first stream's last one;
    when streams barely overlap it is the whole run instead.
    """
    running = [stream for stream in streams if stream]
    if not running:
        return 0.0, 0.0, 0.0
    start = max(stream[0].at for stream in running)
    end = min(stream[-1].at for stream in running)
    if end - start < 0.5:
        start = min(stream[0].at for stream in running)
        end = max(stream[-1].at for stream in running)
    seconds = max(end - start, 1e-9)
    # A frame's tokens were made in the time before it: the one at `start` is not the window's.
    inside = [a for stream in running for a in stream if start < a.at <= end]
    return sum(a.tokens for a in inside) / seconds, len(inside) / seconds, seconds
