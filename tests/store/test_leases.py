"""Ownership leases and cancel requests, on every store."""

from __future__ import annotations

import asyncio

from relay.config import StoreSettings
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore
from tests.store.conftest import StoreFactory
from tests.store.test_contract import new_session, terminal

TTL_S = 0.3


async def test_a_new_session_holds_a_lease(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    await new_session(store)
    assert await store.lapsed_leases(10) == []


async def test_a_lease_not_renewed_lapses(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await new_session(store)
    await asyncio.sleep(TTL_S + 0.2)
    assert await store.lapsed_leases(10) == [session_id]


async def test_renewed_leases_do_not_lapse(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    kept, dropped = await new_session(store), await new_session(store)
    for _ in range(5):
        await store.renew_leases("instance-a", [kept])
        await asyncio.sleep(TTL_S / 3)
    assert await store.lapsed_leases(10) == [dropped]


async def test_ended_sessions_never_lapse(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await new_session(store, events=1)
    await store.append(session_id, [terminal(2)])
    await asyncio.sleep(TTL_S + 0.2)
    assert await store.lapsed_leases(10) == []
    assert await store.lapsed_leases(10) == []  # and they left the index


async def test_cancel_requests_reach_every_instance(redis_url: str) -> None:
    asking = RedisStore.from_url(redis_url, StoreSettings())
    listeners = [RedisStore.from_url(redis_url, StoreSettings()) for _ in range(2)]
    heard: list[asyncio.Queue[str]] = [asyncio.Queue() for _ in listeners]

    async def listen(store: RedisStore, queue: asyncio.Queue[str]) -> None:
        async for session_id in store.cancel_requests():
            queue.put_nowait(session_id)

    tasks = [asyncio.create_task(listen(s, q)) for s, q in zip(listeners, heard, strict=True)]
    try:
        await asyncio.sleep(0.3)  # subscribed
        await asking.publish_cancel("s_example")
        for queue in heard:
            assert await asyncio.wait_for(queue.get(), 2) == "s_example"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for store in [asking, *listeners]:
            await store.close()


async def test_memory_cancel_requests_end_when_the_store_closes() -> None:
    store = MemoryStore(StoreSettings())
    listening = asyncio.create_task(anext(store.cancel_requests(), None))
    await asyncio.sleep(0.05)
    await store.close()
    assert await asyncio.wait_for(listening, 1) is None
