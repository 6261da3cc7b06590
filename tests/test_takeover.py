"""Takeovers on the memory store with the in-process mock: an instance dies mid-answer
(its generation task is stopped without a word, as SIGKILL stops it), another one's
lease reaper finds the lapsed lease, and, as the upstream's `on_instance_loss` says,
continues the answer, restarts it, or ends the session with `generation_lost`.

The processes, Redis and nginx version of these is tests/scaleout/test_takeover.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import pytest

from relay import metrics
from relay.clients import Clients
from relay.config import Settings, load_settings
from relay.events import Event, EventType, SessionStatus, Usage
from relay.leases import LeaseKeeper
from relay.providers.mock import MockProvider
from relay.providers.router import ModelRouter, Route
from relay.runner import GenerationRunner, ResumePoint
from relay.sessions import Sessions
from relay.store.memory import MemoryStore
from relay.takeover import LogSoFar, Takeovers, continuation, policy_of, seam
from relay.tasks import cancel_and_wait
from relay.vocabulary import GenerationRequest, Message
from tests.test_runner import wait_until_ended

TTL_S = 0.3
MODEL = "mock:tokens=60,tps=400,ttft_ms=0"
REQUEST = GenerationRequest(model=MODEL, messages=[Message(role="user", content="tell me")])


def settings_for(policy: str, **upstream: Any) -> Settings:
    mock = {"name": "mock", "kind": "mock", "models": ["mock", "mock:*"]}
    mock |= {"on_instance_loss": policy, **upstream}
    overrides = {"store": {"lease_ttl_s": TTL_S}, "upstreams": [mock]}
    return load_settings(None, environ={}, overrides=overrides)


class Instance:
    """One relay instance's runner, sessions and lease keeper on a shared store."""

    def __init__(self, name: str, settings: Settings, store: MemoryStore) -> None:
        self.router = ModelRouter(settings.upstreams)
        self.runner = GenerationRunner(store, settings.generation, settings.store, name)
        self.sessions = Sessions(settings, store, self.router, self.runner)
        takeovers = Takeovers(settings, store, self.runner, self.router, Clients())
        self.keeper = LeaseKeeper(store, self.runner, settings, takeovers)

    async def die(self) -> None:
        """Stop every generation here without writing anything, as a SIGKILL does."""
        generations = list(self.runner._generations.values())
        await cancel_and_wait([t for g in generations for t in (g.task, g.pump) if t])


async def deltas_then_kill(
    store: MemoryStore, instance: Instance, session_id: str, seams: int = 0
) -> None:
    """Kill `instance` once the session's log holds a delta after `seams` takeovers."""
    async with asyncio.timeout(5):
        while not delta_after_seams(await store.read(session_id, 0, 10_000), seams):
            await asyncio.sleep(0.005)
    await instance.die()


def delta_after_seams(events: list[Event], seams: int) -> bool:
    seen = 0
    for event in events:
        if event.type is EventType.STATUS and event.decoded_data()["state"] == "taken_over":
            seen += 1
        elif event.type is EventType.DELTA and seen >= seams:
            return True
    return False


async def reap_after_lapse(instance: Instance) -> None:
    await asyncio.sleep(TTL_S + 0.1)
    await instance.keeper.reap()


def text_of(events: list[Event]) -> str:
    return "".join(e.decoded_data()["text"] for e in events if e.type is EventType.DELTA)


def statuses(events: list[Event]) -> list[str]:
    return [e.decoded_data()["state"] for e in events if e.type is EventType.STATUS]


async def uninterrupted(store: MemoryStore, instance: Instance) -> list[Event]:
    created = await instance.sessions.create(MODEL, REQUEST)
    return (await wait_until_ended(store, created.record.id))[1]


async def run_killed(policy: str, **upstream: Any) -> tuple[list[Event], list[Event], list[Event]]:
    """(the uninterrupted log, the log when killed at its 3rd delta, the prefix stored)."""
    settings = settings_for(policy, **upstream)
    store = MemoryStore(settings.store)
    a, b = Instance("a", settings, store), Instance("b", settings, store)
    try:
        reference = await uninterrupted(store, a)
        created = await a.sessions.create(MODEL, REQUEST)
        await deltas_then_kill(store, a, created.record.id)
        prefix = await store.read(created.record.id, 0, 1000)
        await reap_after_lapse(b)
        record, events = await wait_until_ended(store, created.record.id)
    finally:
        await b.runner.shutdown(1.0)
        await store.close()
    assert record.status is SessionStatus.COMPLETED
    return reference, events, prefix


def assert_continuous(events: list[Event], prefix: list[Event]) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[: len(prefix)] == prefix  # nothing stored was touched
    assert [e.type for e in events].count(EventType.DONE) == 1 and events[-1].type is EventType.DONE


def takeovers_counted(policy: str) -> float:
    labels = {"upstream": "mock", "policy": policy}
    return metrics.REGISTRY.get_sample_value("relay_takeovers_total", labels) or 0.0


async def test_continue_gives_the_text_of_the_answer_never_interrupted() -> None:
    counted = takeovers_counted("continue")
    reference, events, prefix = await run_killed("continue")
    assert takeovers_counted("continue") == counted + 1
    assert_continuous(events, prefix)
    assert text_of(events) == text_of(reference)  # byte for byte
    assert text_of(events).startswith(text_of(prefix)) and text_of(prefix)
    seam_at = len(prefix)
    assert events[seam_at].type is EventType.STATUS
    assert events[seam_at].decoded_data()["state"] == "taken_over"
    assert "restarted" not in statuses(events)
    done = events[-1].decoded_data()
    assert done["usage"]["takeovers"] == 1
    reference_usage = reference[-1].decoded_data()["usage"]
    # The continuation was generated alone: fewer output tokens than the whole answer.
    assert 0 < done["usage"]["output_tokens"] < reference_usage["output_tokens"]


async def test_restart_says_restarted_then_gives_the_whole_answer_again() -> None:
    reference, events, prefix = await run_killed("restart")
    assert_continuous(events, prefix)
    after = events[len(prefix) :]
    assert statuses(after)[:2] == ["taken_over", "restarted"]
    assert text_of(after) == text_of(reference)
    assert events[-1].decoded_data()["usage"]["takeovers"] == 1


async def test_continue_where_the_upstream_cannot_continue_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="relay.takeover")
    counted = takeovers_counted("restart")
    reference, events, prefix = await run_killed("continue", continuation="none")
    assert takeovers_counted("restart") == counted + 1
    assert statuses(events[len(prefix) :])[:2] == ["taken_over", "restarted"]
    assert text_of(events[len(prefix) :]) == text_of(reference)
    assert any("cannot continue" in r.getMessage() for r in caplog.records)


async def lost_session(settings: Settings) -> tuple[MemoryStore, Instance, Instance, str]:
    store = MemoryStore(settings.store)
    a, b = Instance("a", settings, store), Instance("b", settings, store)
    created = await a.sessions.create(MODEL, REQUEST)
    await deltas_then_kill(store, a, created.record.id)
    return store, a, b, created.record.id


async def assert_lost(store: MemoryStore, session_id: str) -> list[Event]:
    record, events = await wait_until_ended(store, session_id)
    assert record.status is SessionStatus.FAILED
    assert events[-1].decoded_data()["code"] == "generation_lost"
    assert "taken_over" not in statuses(events)
    return events


async def test_fail_ends_the_session_with_generation_lost() -> None:
    store, _, b, session_id = await lost_session(settings_for("fail"))
    await reap_after_lapse(b)
    await assert_lost(store, session_id)
    assert await store.read_takeover(session_id) is None  # nothing kept for `fail`
    await store.close()


async def test_after_max_takeovers_the_session_is_lost() -> None:
    settings = settings_for("continue", max_takeovers=1)
    store, _, b, session_id = await lost_session(settings)
    await reap_after_lapse(b)
    await deltas_then_kill(store, b, session_id, seams=1)  # the second instance dies too
    c = Instance("c", settings, store)
    await reap_after_lapse(c)
    events = await wait_until_ended(store, session_id)
    assert events[0].status is SessionStatus.FAILED
    assert events[1][-1].decoded_data()["code"] == "generation_lost"
    assert statuses(events[1]).count("taken_over") == 1
    await store.close()


async def test_a_request_over_the_cap_is_not_eligible_and_the_log_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.takeover")
    settings = settings_for("continue")
    settings.generation.takeover_max_request_bytes = 50
    store, _, b, session_id = await lost_session(settings)
    assert await store.read_takeover(session_id) is None
    await reap_after_lapse(b)
    await assert_lost(store, session_id)
    said = [r for r in caplog.records if "takeover_max_request_bytes" in r.getMessage()]
    assert len(said) == 1 and "cannot be taken over" in said[0].getMessage()
    await store.close()


async def test_two_reapers_at_once_exactly_one_takes_over() -> None:
    settings = settings_for("continue")
    store, _, b, session_id = await lost_session(settings)
    c = Instance("c", settings, store)
    await asyncio.sleep(TTL_S + 0.1)
    await asyncio.gather(b.keeper.reap(), c.keeper.reap(), b.keeper.reap())
    assert (b.runner.running, c.runner.running) in ((1, 0), (0, 1))
    record, events = await wait_until_ended(store, session_id)
    assert record.status is SessionStatus.COMPLETED and record.takeovers == 1
    assert statuses(events).count("taken_over") == 1
    await store.close()


async def test_a_cancel_after_the_seam_reaches_the_new_owner() -> None:
    settings = settings_for("continue")
    slow = "mock:tokens=2000,tps=100,ttft_ms=0"
    store = MemoryStore(settings.store)
    a, b = Instance("a", settings, store), Instance("b", settings, store)
    b.sessions.start()  # its cancel listener
    try:
        created = await a.sessions.create(slow, REQUEST)
        await deltas_then_kill(store, a, created.record.id)
        await reap_after_lapse(b)
        record = await store.get(created.record.id)
        assert record is not None and record.owner == "b"
        status = await a.sessions.cancel(record)  # asked on another instance: the bus
        assert status is SessionStatus.CANCELLED
        _, events = await wait_until_ended(store, created.record.id)
    finally:
        await b.sessions.stop()
    cancelled = events[-1].decoded_data()
    assert cancelled["reason"] == "client" and cancelled["usage"]["takeovers"] == 1
    await store.close()


# The pure parts: the policy, the seam, the fold of what was stored.


def test_policy_of_an_upstream() -> None:
    settings = settings_for("restart")
    assert policy_of(settings.upstreams[0]) == "restart"
    assert policy_of(settings_for("restart", max_takeovers=0).upstreams[0]) == "fail"
    assert policy_of(None) == "fail"
    assert [s.state for s in seam("continue")] == ["taken_over"]
    assert [s.state for s in seam("restart")] == ["taken_over", "restarted"]


def test_the_fold_keeps_text_tool_calls_and_the_last_usage() -> None:
    def event(n: int, kind: str, data: dict[str, Any]) -> Event:
        return Event(n, EventType(kind), msgspec.Raw(msgspec.json.encode(data)))

    so_far = LogSoFar()
    so_far.add([event(1, "status", {"state": "generating"}), event(2, "delta", {"text": "Hel"})])
    so_far.add([
        event(3, "tool_call", {"index": 0, "id": "c", "name": "f", "arguments": "{}"}),
        event(4, "usage", {"input_tokens": 3, "output_tokens": 2}),
        event(5, "reasoning", {"text": "hmm"}),
        event(6, "delta", {"text": "lo"}),
    ])  # fmt: skip
    assert (so_far.text, so_far.tool_calls, so_far.last_event_id) == ("Hello", 1, 6)
    assert (so_far.usage.input_tokens, so_far.usage.output_tokens) == (3, 2)


def test_tool_calls_after_a_takeover_are_numbered_after_those_stored() -> None:
    from relay.events import Usage
    from relay.runner import GenerationProgress

    progress = GenerationProgress()
    progress.earlier = ResumePoint(7, [], Usage(10, 4), tool_calls_before=2, takeovers=1)
    assert progress.tool_index(0) == 2
    combined = progress.combined(Usage(12, 5))
    assert msgspec.json.encode(combined) == b'{"input_tokens":22,"output_tokens":9,"takeovers":1}'


async def test_a_continuation_asks_only_for_what_max_tokens_leaves() -> None:
    so_far = LogSoFar()
    so_far.pieces = ["one two three"]
    route = Route(upstream="mock", model="mock", provider=MockProvider())
    request = GenerationRequest(model="mock", messages=[], max_tokens=10)
    assert continuation(request, so_far, route).max_tokens == 7
    assert continuation(request, so_far, route).prefill == "one two three"
    so_far.usage = Usage(input_tokens=3, output_tokens=9)  # the lost call's own count wins
    assert continuation(request, so_far, route).max_tokens == 1
    unlimited = GenerationRequest(model="mock", messages=[])
    assert continuation(unlimited, so_far, route).max_tokens is None
