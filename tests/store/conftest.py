"""The stores every store test runs against: memory, fakeredis, and real Redis in each
shape (one server, the same over TLS, Sentinel, Cluster) started by the tests.

`make_store` opens a store on a backend of its own; `open_peer` opens another store
object on the backend of a given one, as another relay instance would. The memory store
is one process's own and no other object can share it, so its peer is the store itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio

from relay.config import StoreSettings
from relay.store import Store
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore

StoreFactory = Callable[..., Awaitable[Store]]
PeerFactory = Callable[[Store], Awaitable[Store]]

# store kind -> the fixture with the URL of an empty Redis of that shape
REDIS_URL_FIXTURES = {
    "redis": "redis_url",
    "redis-tls": "redis_tls_url",
    "redis-sentinel": "redis_sentinel_url",
    "redis-cluster": "redis_cluster_url",
}


class Backends:
    """The stores of one kind that a test opened, and what their peers share."""

    def __init__(self, kind: str, redis_url: str | None) -> None:
        self.kind = kind
        self._redis_url = redis_url
        self._stores: list[Store] = []
        # What a store's peers are opened on: its settings and, for fakeredis, its server.
        self._backends: dict[int, tuple[StoreSettings, fakeredis.FakeServer | None]] = {}

    async def make(self, **settings: Any) -> Store:
        server = fakeredis.FakeServer() if self.kind == "fakeredis" else None
        return self._open(StoreSettings(**settings), server)

    async def peer(self, store: Store) -> Store:
        if self.kind == "memory":
            return store
        return self._open(*self._backends[id(store)])

    def _open(self, settings: StoreSettings, server: fakeredis.FakeServer | None) -> Store:
        store = self._build(settings, server)
        self._stores.append(store)
        self._backends[id(store)] = settings, server
        return store

    def _build(self, settings: StoreSettings, server: fakeredis.FakeServer | None) -> Store:
        if self.kind == "memory":
            return MemoryStore(settings)
        if self.kind == "fakeredis":
            return RedisStore(fakeredis.FakeAsyncRedis(server=server), settings)
        assert self._redis_url is not None
        return RedisStore.from_url(self._redis_url, settings)

    async def close(self) -> None:
        for store in self._stores:
            await store.close()


@pytest.fixture(params=["memory", "fakeredis", *REDIS_URL_FIXTURES])
async def backends(request: pytest.FixtureRequest) -> AsyncIterator[Backends]:
    kind: str = request.param
    fixture = REDIS_URL_FIXTURES.get(kind)
    opened = Backends(kind, request.getfixturevalue(fixture) if fixture else None)
    yield opened
    await opened.close()


@pytest.fixture
def make_store(backends: Backends) -> StoreFactory:
    """Makes stores of one kind with the given `StoreSettings` fields; closes them after."""
    return backends.make


@pytest.fixture
def open_peer(backends: Backends) -> PeerFactory:
    """Opens another store object on the backend of the given store; closed after."""
    return backends.peer


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the test's Redis, to look at what a store wrote."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()
