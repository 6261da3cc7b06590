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
RSS_EVERY_S = 2.0

# (fraction of the load's duration, fault, target)
SCHEDULE: list[tuple[float, str, str]] = [
    (0.12, "drain", "relay-a"),
    (0.26, "kill", "relay-b"),
    (0.40, "freeze", "redis"),
    (0.54, "redis-restart", "redis"),
    (0.68, "kill", "relay-a"),
    (0.82, "drain", "relay-b"),
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
    """Every fault of SCHEDULE at its time (wall clock from `started_at`), in order; each
    one is appended to `faults` once its target answers again."""
    for fraction, kind, target in SCHEDULE:
        await asyncio.sleep(max(0.0, started_at + fraction * load_s - time.time()))
        say(f"+{time.time() - started_at:5.0f} s  {kind} {target}")
        fault = await asyncio.to_thread(_operation(deployment, kind, target))
        faults.append(fault)
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
