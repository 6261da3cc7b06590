"""What only the memory store has: its bound on the number of sessions, and the timer
that frees finished sessions once they expire."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator

import pytest

from relay.config import StoreSettings
from relay.errors import StoreFull
from relay.store.memory import MemoryStore
from tests.store.sessions import delta, new_record, new_session, terminal


async def test_the_oldest_finished_session_makes_room() -> None:
    store = MemoryStore(StoreSettings(max_sessions=3))
    older = await new_session(store, events=1)
    newer = await new_session(store, events=1)
    running = await new_session(store, events=1)
    await store.append(older, [terminal(2)])
    await store.append(newer, [terminal(2)])
    await new_session(store)
    assert await store.get(older) is None
    assert await store.get(newer) is not None
    assert await store.get(running) is not None


async def test_creating_fails_when_every_session_is_running() -> None:
    store = MemoryStore(StoreSettings(max_sessions=2))
    for _ in range(2):
        await new_session(store)
    with pytest.raises(StoreFull):
        await store.create(new_record())


async def test_a_full_store_still_takes_events() -> None:
    store = MemoryStore(StoreSettings(max_sessions=1))
    session_id = await new_session(store)
    record = await store.append(session_id, [delta(1)])
    assert record.last_event_id == 1


EVENT_TEXT = "x" * 1000


def expiry_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "relay-memory-expiry"]


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0]


async def finished_session(store: MemoryStore, events: int) -> str:
    """A session of `events` deltas of about 1 KB each, ended."""
    session_id = await new_session(store)
    await store.append(session_id, [delta(n, EVENT_TEXT) for n in range(1, events + 1)])
    await store.append(session_id, [terminal(events + 1)])
    return session_id


async def test_expired_sessions_are_freed_without_a_create(traced: None) -> None:
    store = MemoryStore(StoreSettings(retention_s=0.2))
    before = traced_bytes()
    await finished_session(store, events=2000)
    assert traced_bytes() - before > 2_000_000
    await asyncio.sleep(0.5)  # past the retention; nothing else touches the store
    assert traced_bytes() - before < 200_000
    assert expiry_tasks() == []  # the timer stops once nothing is left to expire
    await store.close()


async def test_the_timer_follows_the_stores_clock() -> None:
    now = [1000.0]
    store = MemoryStore(StoreSettings(retention_s=60), clock=lambda: now[0])
    session_id = await finished_session(store, events=1)
    [timer] = expiry_tasks()
    await asyncio.sleep(0.05)  # the timer sleeps until its next look
    now[0] += 61  # the clock jumps past the retention
    async with asyncio.timeout(3):  # the timer looks again at least every second
        await timer
    assert await store.read(session_id, 0, 10) == []
    await store.close()


async def test_close_cancels_the_timer_and_waits_for_it() -> None:
    store = MemoryStore(StoreSettings(retention_s=60))
    await finished_session(store, events=1)
    [timer] = expiry_tasks()
    await store.close()
    assert timer.cancelled()
    await finished_session(store, events=1)
    assert expiry_tasks() == []  # a closed store starts none again
