"""The Redis connections of one relay instance do not grow with its subscribers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from tests.frontdoors.conftest import Relay, StartRelay
from tests.sse_client import SseReader

pytestmark = pytest.mark.parametrize("store_url", ["redis"], indirect=True)

MAX_CONNECTIONS, MAX_BLOCKING_READS = 4, 2


async def relay_connections(redis_url: str) -> int:
    """Clients connected to Redis, besides the one asking."""
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        return len(await client.client_list()) - 1


@contextlib.asynccontextmanager
async def subscribers(relay: Relay, session_id: str, count: int) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        readers: list[SseReader] = await asyncio.gather(
            *(stack.enter_async_context(relay.subscribe(session_id)) for _ in range(count))
        )
        await asyncio.gather(*(reader.read(2) for reader in readers))  # all are live
        yield


async def test_500_subscribers_cost_the_connections_of_5(
    start_relay: StartRelay, store_url: str
) -> None:
    relay = await start_relay(
        store={"max_connections": MAX_CONNECTIONS, "max_blocking_reads": MAX_BLOCKING_READS}
    )
    created = await relay.create("mock:tokens=100000,tps=20,ttft_ms=0")
    async with subscribers(relay, created["id"], 5):
        with_5 = await relay_connections(store_url)
    async with subscribers(relay, created["id"], 500):
        with_500 = await relay_connections(store_url)
    print(f"redis connections: {with_5} with 5 subscribers, {with_500} with 500")
    assert with_500 <= MAX_CONNECTIONS + MAX_BLOCKING_READS + 1  # the append sender's own
    assert with_500 <= with_5 + 1  # no growth with subscribers (one may open meanwhile)
