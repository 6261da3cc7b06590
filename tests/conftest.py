"""Fixtures shared by the whole suite, grouped by what they provide.

Tests are plain `async def` functions: pytest-asyncio runs in auto mode.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestServer

from tests.mock_upstream_server import mock_upstream_server
from tests.redis_proxy import CuttingProxy, ProxyThread, TlsCertificates
from tests.redis_server import (
    LocalCluster,
    LocalSentinel,
    RedisServer,
    require_redis_server,
)

# --- real servers -----------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests that stop or restart a server start their own."""
    server = RedisServer(require_redis_server())
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the shared redis-server."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def tls_certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsCertificates:
    """A test CA and a server certificate for 127.0.0.1, for the session."""
    return TlsCertificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def redis_tls(
    redis_server: RedisServer, tls_certificates: TlsCertificates
) -> Iterator[CuttingProxy]:
    """The shared redis-server behind a TLS proxy (the bundled redis-server has no TLS of
    its own) whose certificate the test CA issued, for the session."""
    running = ProxyThread(CuttingProxy(redis_server.port, tls=tls_certificates))
    running.start()
    yield running.proxy
    running.close()


@pytest.fixture
def redis_tls_url(redis_url: str, redis_tls: CuttingProxy) -> str:
    """A `rediss://` URL of an empty database on the shared redis-server, over TLS, that
    trusts the test CA (`redis_url` empties it)."""
    return redis_tls.url()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """One three-node Redis Cluster for the session (about 2 s to form)."""
    cluster = LocalCluster(require_redis_server())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster_url(redis_cluster: LocalCluster) -> str:
    """A `redis+cluster://` URL of the shared cluster, emptied."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[LocalSentinel]:
    """One master watched by one Sentinel, for the session; failover tests start their own."""
    sentinel = LocalSentinel(require_redis_server())
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.close()


@pytest.fixture
def redis_sentinel_url(redis_sentinel: LocalSentinel) -> str:
    """A `redis+sentinel://` URL of the shared master, emptied."""
    redis_sentinel.master.execute("FLUSHALL")
    return redis_sentinel.url


@pytest.fixture
async def mock_upstream() -> AsyncIterator[TestServer]:
    """A fresh `relay mock-upstream` app on a real socket (fresh counters per test)."""
    server = mock_upstream_server()
    await server.start_server()
    yield server
    await server.close()


# --- hygiene ----------------------------------------------------------------------

SDK_CLIENTS = (("openai", "AsyncOpenAI"), ("anthropic", "AsyncAnthropic"))


@pytest.fixture(autouse=True)
def sdk_clients_are_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that leaves an official SDK's async client open fails. The garbage collector
    would close it later, in another test: the SDKs' `__del__` schedules `aclose()` on
    whatever event loop runs then, the client's connections belong to a loop that has
    ended, and asyncio logs "Task exception was never retrieved" where it is not the
    culprit. (An SDK a test uses is imported when the test module is, before this runs.)"""
    opened: list[Any] = []
    for module, name in SDK_CLIENTS:
        if module in sys.modules:
            sdk_class = getattr(sys.modules[module], name)
            monkeypatch.setattr(sdk_class, "__init__", recorded(sdk_class.__init__, opened))
    yield
    left_open = [type(client).__name__ for client in opened if not client.is_closed()]
    assert not left_open, f"SDK clients left open (close them in the test): {left_open}"


def recorded(init: Any, opened: list[Any]) -> Any:
    def init_and_record(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    return init_and_record
