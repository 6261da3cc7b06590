"""Ending a session gives its quota slot back before the end can be read, on the memory
store and on a real Redis: a reader that has the terminal event finds the slot already
free, so its client, at its `max_concurrent_sessions` limit, may start the next session
at once. Each way a session ends is tried: the writer's last batch, the cap's error in
place of the batch's tail, `end_from_outside` (a cancel or the lease reaper) and an
external producer's terminal batch (relay/external.py). The store notes a slot only once
its `release` has returned, and admission is not asked, so its self-healing (the stale
check) cannot hide a slot given back late."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest

from relay.config import StoreSettings, load_settings
from relay.events import CancelledData, DoneData, EventType, TextData
from relay.external import ExternalProducers
from relay.quotas import QuotaLimits
from relay.session import SessionRecord, new_session_id
from relay.store import Store
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore
from relay.writer import SessionWriter, end_from_outside
from tests.store.sessions import new_record

ONE_AT_A_TIME = QuotaLimits(max_concurrent_sessions=1)
SESSIONS_IN_A_ROW = 20
MAX_EVENTS = 100


class SlotsGivenBack:
    """A store that notes each slot once the store has given it back."""

    given_back: set[str]

    async def release(self, client: str, session_id: str) -> None:
        await super().release(client, session_id)  # type: ignore[misc]
        self.given_back.add(session_id)


class NotingMemory(SlotsGivenBack, MemoryStore):
    pass


class NotingRedis(SlotsGivenBack, RedisStore):
    pass


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[NotingMemory | NotingRedis]:
    settings = StoreSettings(max_events_per_session=MAX_EVENTS)
    opened: NotingMemory | NotingRedis
    if request.param == "memory":
        opened = NotingMemory(settings)
    else:
        opened = NotingRedis.from_url(request.getfixturevalue("redis_url"), settings)
    opened.given_back = set()
    yield opened
    await opened.close()


async def admitted_session(store: Store, client: str) -> SessionRecord:
    """A running session of `client`'s, holding its only slot."""
    session_id = new_session_id()
    assert await store.admit(client, session_id, ONE_AT_A_TIME, time.time()) is None
    return await store.create(msgspec.structs.replace(new_record(), id=session_id, client=client))


async def slot_free_at_the_end(store: SlotsGivenBack, session_id: str) -> bool:
    """Read the session's log until its terminal event: was its slot given back by then?"""
    assert isinstance(store, Store)
    after = 0
    while events := await store.wait(session_id, after, 1000, 5):
        if events[-1].is_terminal:
            return session_id in store.given_back
        after = events[-1].id
    raise AssertionError("the session did not end")


def new_writer(store: Store, record: SessionRecord) -> SessionWriter:
    return SessionWriter(
        store, record.id, last_event_id=0, retry_s=1, max_events=MAX_EVENTS, slot_of=record.client
    )


async def last_batch(store: Store, record: SessionRecord) -> None:
    writer = new_writer(store, record)
    await writer.append([(EventType.DELTA, TextData("a"))])
    await writer.append([(EventType.DELTA, TextData("b")), (EventType.DONE, DoneData("stop"))])


async def past_the_cap(store: Store, record: SessionRecord) -> None:
    """A batch too long for the cap: its tail becomes the cap's error, which ends it."""
    ended = await new_writer(store, record).append([(EventType.DELTA, TextData("a"))] * 105)
    assert ended[-1].type is EventType.ERROR and ended[-1].id == MAX_EVENTS


async def from_outside(store: Store, record: SessionRecord) -> None:
    cancelled = (EventType.CANCELLED, CancelledData("client"))
    assert await end_from_outside(store, record, cancelled, retry_s=1, max_events=MAX_EVENTS)


async def external_producer(store: Store, record: SessionRecord) -> None:
    settings = load_settings(
        None, environ={}, overrides={"store": {"max_events_per_session": MAX_EVENTS}}
    )
    batch = [(EventType.DELTA, TextData("a")), (EventType.DONE, DoneData("stop"))]
    await ExternalProducers(settings, store, "here").append(record, 1, batch)


@pytest.mark.parametrize("end", [last_batch, past_the_cap, from_outside, external_producer])
async def test_the_slot_is_free_when_the_end_can_be_read(
    store: NotingMemory | NotingRedis, end: Callable[[Store, SessionRecord], Awaitable[None]]
) -> None:
    client = f"web-{uuid.uuid4().hex[:8]}"
    for _ in range(SESSIONS_IN_A_ROW):  # at its limit, starting again once it read the end
        record = await admitted_session(store, client)
        reader = asyncio.create_task(slot_free_at_the_end(store, record.id))
        await end(store, record)
        assert await reader, "the end could be read while the slot was still held"
