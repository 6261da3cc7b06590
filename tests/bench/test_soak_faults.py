"""The soak's fault schedule: every kind of fault in every run, Redis restarted once."""

from __future__ import annotations

from bench.soak.faults import CYCLE, schedule


def test_a_short_load_gets_one_cycle_spread_evenly_within_it() -> None:
    plan = schedule(70.0)
    assert [(kind, target) for _, kind, target in plan] == CYCLE
    assert [at for at, _, _ in plan] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


def test_a_long_load_repeats_the_cycle_but_restarts_redis_once() -> None:
    plan = schedule(555.0)
    kinds = [kind for _, kind, _ in plan]
    assert len(plan) == 2 * len(CYCLE)
    assert kinds.count("redis-restart") == 1
    assert kinds.count("freeze") == 3
    assert kinds.count("kill") == 4 and kinds.count("drain") == 4
    times = [at for at, _, _ in plan]
    assert times == sorted(times) and times[0] > 0 and times[-1] < 555.0
