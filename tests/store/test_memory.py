"""What only the memory store has: its bound on the number of sessions."""

from __future__ import annotations

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
