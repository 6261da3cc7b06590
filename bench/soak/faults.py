"""When the soak does what to which process, and the memory watch over the relays.

The schedule is spread over the load's duration so that each fault meets a full load and
the system is back before the next one: at most one relay is down at a time, and Redis is
restarted once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bench.soak.deployment import Deployment
from bench.soak.traces import Fault, RssSample

FREEZE_S = 3.0
# Between two faults: nginx takes an instance that failed back after fail_timeout (2 s), so
# one relay is down at a time, never both.
SETTLE_S = 5.0
RSS_EVERY_S = 2.0

# One cycle of faults (fault, target); a load longer than CYCLE_S repeats it, with a second
# freeze instead of the Redis restart, which happens once.
CYCLE: list[tuple[str, str]] = [
    ("drain", "relay-a"),
    ("kill", "relay-b"),
    ("freeze", "redis"),
    ("redis-restart", "redis"),
    ("kill", "relay-a"),
    ("drain", "relay-b"),
]
CYCLE_S = 240.0


def schedule(load_s: float) -> list[tuple[float, str, str]]:
    """(seconds into the load, fault, target): the cycles spread evenly over the load."""
    repeat = [
        ("freeze", "redis") if kind == "redis-restart" else (kind, target) for kind, target in CYCLE
    ]
    plan = CYCLE + repeat * (max(1, int(load_s // CYCLE_S)) - 1)
    return [
        (load_s * (n + 1) / (len(plan) + 1), kind, target) for n, (kind, target) in enumerate(plan)
    ]


def _operation(deployment: Deployment, kind: str, target: str) -> Callable[[], Fault]:
    operations: dict[str, Callable[[], Fault]] = {
        "drain": lambda: deployment.drain(target),
        "kill": lambda: deployment.kill(target),
        "freeze": lambda: deployment.freeze_redis(FREEZE_S),
        "redis-restart": deployment.restart_redis,
    }
    return operations[kind]


async def inject(
    deployment: Deployment,
    started_at: float,
    load_s: float,
    faults: list[Fault],
    say: Callable[[str], None],
) -> None:
    """Every fault of the schedule at its time (wall clock from `started_at`), in order,
    but never sooner than SETTLE_S after the one before it ended; each one is appended to
    `faults` once its target answers again."""
    settled_at = started_at
    for offset, kind, target in schedule(load_s):
        at = max(started_at + offset, settled_at + SETTLE_S)
        await asyncio.sleep(max(0.0, at - time.time()))
        say(f"+{time.time() - started_at:5.0f} s  {kind} {target}")
        fault = await asyncio.to_thread(_operation(deployment, kind, target))
        faults.append(fault)
        settled_at = fault.recovered_at
        took = fault.recovered_at - fault.started_at
        status = "" if fault.exit_status is None else f", exit status {fault.exit_status}"
        say(f"+{time.time() - started_at:5.0f} s  {target} back after {took:.1f} s{status}")


async def watch_memory(
    deployment: Deployment, samples: list[RssSample], stop: asyncio.Event
) -> None:
    """Each relay's VmRSS every RSS_EVERY_S until `stop` is set."""
    while not stop.is_set():
        samples.extend(deployment.rss())
        try:
            await asyncio.wait_for(stop.wait(), RSS_EVERY_S)
        except TimeoutError:
            continue
