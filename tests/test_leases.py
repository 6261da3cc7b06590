"""The lease keeper on the memory store, with a scripted provider: a loop blocked past
`lease_ttl_s` lapses every lease, yet the keeper renews those of the sessions still
generating here and ends only the session whose generator stopped elsewhere; and the
renewal says how late it ran."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from relay.config import load_settings
from relay.events import EventType, SessionStatus
from relay.leases import LeaseKeeper
from relay.providers.base import Finish, TextDelta
from relay.providers.router import Route
from relay.runner import GenerationRunner
from relay.store.memory import MemoryStore
from tests.store.sessions import new_record
from tests.test_runner import REQUEST, ScriptedProvider, wait_until_ended

TTL_S = 0.3


async def test_a_blocked_loop_ends_only_the_session_whose_generator_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(None, environ={}, overrides={"store": {"lease_ttl_s": TTL_S}})
    store = MemoryStore(settings.store)
    runner = GenerationRunner(store, settings.generation, settings.store, "here")
    provider = ScriptedProvider([TextDelta("a"), None, Finish("stop")])
    live = await runner.create("scripted", Route("test", "scripted", provider), REQUEST)
    orphan = new_record()  # created by an instance that stopped since
    await store.create(orphan)
    keeper = LeaseKeeper(store, runner, settings)
    keeper.start()
    caplog.set_level(logging.WARNING, logger="relay.leases")
    try:
        await asyncio.sleep(0.05)
        time.sleep(TTL_S * 3)  # noqa: ASYNC251  # a stall: both leases lapse meanwhile
        orphan_record, orphan_events = await wait_until_ended(store, orphan.id)
        await asyncio.sleep(TTL_S)  # a few more rounds of renewing and reaping
        assert (await store.lapsed_leases(10)) == []
        record = await store.get(live.record.id)
        assert record is not None and record.status is SessionStatus.RUNNING
        provider.release.set()
        live_record, live_events = await wait_until_ended(store, live.record.id)
    finally:
        await keeper.stop()
        await store.close()
    assert orphan_record.status is SessionStatus.FAILED
    assert orphan_events[-1].decoded_data()["code"] == "generation_lost"
    assert live_record.status is SessionStatus.COMPLETED
    assert [event.type for event in live_events][-1] is EventType.DONE
    late = [r.getMessage() for r in caplog.records if "lease renewal ran" in r.getMessage()]
    assert late and not [r for r in caplog.records if r.levelno > logging.WARNING]
    assert "s late" in late[0] and "of 1 session(s)" in late[0]
    assert any("session" in r.getMessage() and "lost its generator" in r.getMessage()
               for r in caplog.records)  # fmt: skip
