"""The stores every store test runs against: memory, fakeredis, and real Redis in each
shape (one server, Sentinel, Cluster) started by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest

from relay.config import StoreSettings
from relay.store.base import Store
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore

StoreFactory = Callable[..., Awaitable[Store]]

# store kind -> the fixture with the URL of an empty Redis of that shape
REDIS_URL_FIXTURES = {
    "redis": "redis_url",
    "redis-sentinel": "redis_sentinel_url",
    "redis-cluster": "redis_cluster_url",
}


def build_store(kind: str, settings: StoreSettings, redis_url: str | None) -> Store:
    if kind == "memory":
        return MemoryStore(settings)
    if kind == "fakeredis":
        return RedisStore(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), settings)
    assert redis_url is not None
    return RedisStore.from_url(redis_url, settings)


@pytest.fixture(params=["memory", "fakeredis", *REDIS_URL_FIXTURES])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Makes stores of one kind with the given `StoreSettings` fields; closes them after."""
    kind: str = request.param
    fixture = REDIS_URL_FIXTURES.get(kind)
    redis_url = request.getfixturevalue(fixture) if fixture else None
    stores: list[Store] = []

    async def make(**settings: Any) -> Store:
        stores.append(build_store(kind, StoreSettings(**settings), redis_url))
        return stores[-1]

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store()
