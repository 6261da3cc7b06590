"""How big each scenario is: `quick` for `make bench` (under 3 minutes), `full` for
`make bench-full` (the sizes issue 5 names)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Sizes:
    name: str
    ttft_requests: int  # per target, after the warm-up
    ttft_warmup: int
    lag_streams: tuple[int, ...]
    lag_tps: float
    lag_seconds: float  # how long each stream runs
    lag_stagger_s: float  # streams start evenly over this long
    lag_large_all: bool  # at the largest count, also the proxy and coalescing off
    grace_s: float  # a streams run is cut this long after its last stream was due to end
    throughput_tps: float  # per stream; the ramp adds streams
    throughput_seconds: float
    throughput_start: int  # offered tokens/s of the first step
    throughput_factor: float  # each step offers this much more
    throughput_max: int  # offered tokens/s never tried beyond this
    fanout_subscribers: int
    fanout_seconds: float
    replay_events: int
    replay_repeats: int
    idle_subscribers: int
    idle_sessions: int
    idle_stores: tuple[str, ...]
    idle_lag_seconds: float  # streams while the idle subscribers are held: over a heartbeat
    reduced: str  # what this size leaves out, said in the output

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Sizes(
    name="quick",
    ttft_requests=200,
    ttft_warmup=20,
    lag_streams=(100, 1000),
    lag_tps=50,
    lag_seconds=3,
    lag_stagger_s=1,
    lag_large_all=False,
    grace_s=5,
    throughput_tps=200,
    throughput_seconds=3,
    throughput_start=2000,
    throughput_factor=2,
    throughput_max=128_000,
    fanout_subscribers=1000,
    fanout_seconds=3,
    replay_events=10_000,
    replay_repeats=10,
    idle_subscribers=10_000,
    idle_sessions=100,
    idle_stores=("memory",),
    idle_lag_seconds=20,
    reduced=(
        "quick pass: 200 TTFT samples per target; 3 s streams; at 1,000 streams only direct "
        "and relay with the default flush; throughput steps of x2, 3 s each, direct only up to "
        "twice relay's limit; 10 replays; idle subscribers on the memory store only"
    ),
)

FULL = Sizes(
    name="full",
    ttft_requests=1000,
    ttft_warmup=50,
    lag_streams=(100, 1000),
    lag_tps=50,
    lag_seconds=10,
    lag_stagger_s=2,
    lag_large_all=True,
    grace_s=10,
    throughput_tps=200,
    throughput_seconds=6,
    throughput_start=1000,
    throughput_factor=1.41,
    throughput_max=200_000,
    fanout_subscribers=1000,
    fanout_seconds=10,
    replay_events=10_000,
    replay_repeats=30,
    idle_subscribers=10_000,
    idle_sessions=100,
    idle_stores=("memory", "redis"),
    idle_lag_seconds=20,
    reduced="",
)
