"""The Redis store on a Redis Cluster and behind Sentinel: what the contract suite cannot see.

Sessions spread over the cluster's nodes with each session's keys in one slot; scripts
reach nodes that never saw them; connections stay bounded per node; a Sentinel failover
is followed; unreachable shapes are unavailable, not hung; and the whole relay runs over
HTTP on a cluster. The servers are real, started by tests/redis_server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.config import StoreSettings, load_settings
from relay.errors import StoreUnavailable
from relay.events import EventType
from relay.store import open_store
from relay.store.redis import RedisStore
from relay.store.redis.keys import session_keys
from relay.store.redis.scripts import APPEND_SCRIPT
from tests.redis_server import LocalCluster, LocalSentinel, free_port, require_redis_server
from tests.sse_client import SseEvent, SseReader
from tests.store.sessions import delta, new_session, terminal

READ_TIMEOUT_S = 10.0


@pytest.fixture
async def cluster_store(redis_cluster_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_cluster_url, StoreSettings())
    yield store
    await store.close()


async def test_open_store_takes_cluster_and_sentinel_urls(
    redis_cluster_url: str, redis_sentinel_url: str
) -> None:
    for url in (redis_cluster_url, redis_sentinel_url):
        store = open_store(StoreSettings(url=url))
        assert isinstance(store, RedisStore)
        await store.ping()
        await store.close()


# --- cluster ------------------------------------------------------------------------------


async def test_sessions_spread_over_the_nodes_each_in_one_slot(
    cluster_store: RedisStore, redis_cluster: LocalCluster
) -> None:
    session_ids = [await new_session(cluster_store, events=1) for _ in range(30)]
    asked = redis_cluster.nodes[0]
    nodes_used = set()
    for session_id in session_ids:
        keys = session_keys(session_id)
        slots = {asked.execute("CLUSTER KEYSLOT", key) for key in keys}
        assert len(slots) == 1, f"{session_id}: keys in slots {slots}"
        owner = redis_cluster.node_of_slot(slots.pop())
        assert owner.execute("EXISTS", keys.log, keys.meta) == 2
        nodes_used.add(owner.port)
    assert len(nodes_used) > 1


async def test_a_node_that_lost_the_scripts_is_sent_them(
    cluster_store: RedisStore, redis_cluster: LocalCluster
) -> None:
    session_id = await new_session(cluster_store, events=1)
    for node in redis_cluster.nodes:
        node.execute("SCRIPT FLUSH")  # as on a restarted or newly added node
    other = await new_session(cluster_store, events=2)
    record = await cluster_store.append(session_id, [terminal(2)])
    assert record.last_event_id == 2
    assert [event.id for event in await cluster_store.read(other, 0, 10)] == [1, 2]


async def test_connections_are_bounded_per_node(
    redis_cluster_url: str, redis_cluster: LocalCluster
) -> None:
    store = RedisStore.from_url(
        redis_cluster_url, StoreSettings(max_connections=4, max_blocking_reads=2)
    )
    # More followed sessions than tail connections, each with many waiters.
    session_ids = await asyncio.gather(*(new_session(store, events=1) for _ in range(4)))
    waiters = [
        asyncio.create_task(store.wait(session_id, 1, 100, timeout=10))
        for session_id in session_ids
        for _ in range(25)
    ]
    # Far more concurrent commands than connections: they take turns, none fails.
    records = await asyncio.gather(*(store.get(session_ids[n % 4]) for n in range(200)))
    assert all(record is not None for record in records)
    await asyncio.gather(*(store.append(session_id, [delta(2)]) for session_id in session_ids))
    results = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert all(result == [delta(2)] for result in results)
    for node in redis_cluster.nodes:
        # The store's pools; the connection redis-py keeps to the node it discovered the
        # cluster through (CLUSTER SLOTS); the one asking.
        assert len(node.execute("CLIENT LIST")) <= 4 + 2 + 1 + 1
    await store.close()


async def test_blocking_reads_go_straight_to_the_keys_node(
    cluster_store: RedisStore, redis_cluster: LocalCluster
) -> None:
    """XREAD's key position is not fixed; finding it must not cost a COMMAND per read."""
    session_id = await new_session(cluster_store, events=1)
    before = _command_calls(redis_cluster)
    for after in range(1, 4):
        waiting = asyncio.create_task(cluster_store.wait(session_id, after, 100, timeout=5))
        await asyncio.sleep(0.05)
        await cluster_store.append(session_id, [delta(after + 1)])
        assert [event.id for event in await waiting] == [after + 1]
    assert _command_calls(redis_cluster) == before


def _command_calls(cluster: LocalCluster) -> int:
    stats = [node.execute("INFO", "commandstats") for node in cluster.nodes]
    return sum(stat.get("cmdstat_command", {}).get("calls", 0) for stat in stats)


# --- sentinel -----------------------------------------------------------------------------


@pytest.fixture
def sentinel_with_replica() -> Iterator[LocalSentinel]:
    """A master, one replica and a Sentinel of this test's own, free to fail over."""
    topology = LocalSentinel(require_redis_server(), replicas=1)
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


async def test_a_sentinel_failover_is_followed(sentinel_with_replica: LocalSentinel) -> None:
    store = RedisStore.from_url(sentinel_with_replica.url, StoreSettings())
    session_id = await new_session(store, events=2)
    await asyncio.to_thread(sentinel_with_replica.fail_over)
    promoted = sentinel_with_replica.master
    # Replicas are sent what scripts did, not the scripts: the new master has none.
    assert promoted.execute("SCRIPT EXISTS", APPEND_SCRIPT.sha) == [False]
    # A call on a connection to the dead master fails, as in any outage (redis-py
    # retries it at the old address); the next connects through the Sentinel.
    with contextlib.suppress(StoreUnavailable):
        await store.ping()
    record = await store.append(session_id, [delta(3), terminal(4)])
    assert record.status.is_final
    assert [event.id for event in await store.read(session_id, 0, 10)] == [1, 2, 3, 4]
    assert [event.id for event in await store.read(await new_session(store, 1), 0, 10)] == [1]
    assert promoted.execute("SCRIPT EXISTS", APPEND_SCRIPT.sha) == [True]
    await store.close()


# --- outages --------------------------------------------------------------------------------


TLS_OPTIONS = "ssl_cert_reqs=none&ssl_check_hostname=false&ssl_ca_certs=/nonexistent/ca.pem"


@pytest.mark.parametrize(
    "shape",
    ["cluster", "sentinel", "unknown master", "server over TLS", "cluster over TLS",
     "sentinel over TLS"],
)  # fmt: skip
async def test_an_unreachable_shape_is_unavailable_at_once(
    shape: str, redis_sentinel: LocalSentinel
) -> None:
    """Also: the client each URL builds takes its options (no TypeError at first use)."""
    url = {
        "cluster": f"redis+cluster://127.0.0.1:{free_port()}",
        "sentinel": f"redis+sentinel://127.0.0.1:{free_port()}/relay-master",
        "unknown master": f"redis+sentinel://127.0.0.1:{redis_sentinel.sentinel.port}/nobody",
        "server over TLS": f"rediss://u:p@127.0.0.1:{free_port()}/1?{TLS_OPTIONS}",
        "cluster over TLS": f"rediss+cluster://u:p@127.0.0.1:{free_port()}?{TLS_OPTIONS}",
        "sentinel over TLS": (
            f"rediss+sentinel://u:p@127.0.0.1:{free_port()}/m/1?sentinel_password=s&{TLS_OPTIONS}"
        ),
    }[shape]
    store = RedisStore.from_url(url, StoreSettings())
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await new_session(store)
    assert time.monotonic() - started < 3
    await store.close()


# --- the whole relay, over HTTP, on a cluster ------------------------------------------------


@pytest.fixture
async def relay_on_cluster(redis_cluster_url: str) -> AsyncIterator[TestServer]:
    settings = load_settings(None, environ={}, overrides={"store": {"url": redis_cluster_url}})
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_the_relay_over_http_on_a_cluster(relay_on_cluster: TestServer) -> None:
    base = str(relay_on_cluster.make_url(""))
    timeout = aiohttp.ClientTimeout(total=READ_TIMEOUT_S)
    async with aiohttp.ClientSession(base, timeout=timeout) as http:
        session_id = await _create(http, "mock:tokens=20,tps=0,ttft_ms=0")
        events = await _events(http, session_id)
        assert events[-1].event == EventType.DONE
        assert [event.int_id for event in events] == list(range(1, len(events) + 1))

        resumed = await _events(http, session_id, {"Last-Event-ID": "3"})
        assert [event.key() for event in resumed] == [event.key() for event in events[3:]]
        last = str(events[-1].int_id)
        async with http.get(_events_path(session_id), headers={"Last-Event-ID": last}) as done:
            assert done.status == 204

        cancelled_id = await _create(http, "mock:tokens=1000,tps=20,ttft_ms=0")
        async with http.delete(f"/v1/sessions/{cancelled_id}") as response:
            assert response.status == 202
        cancelled = await _events(http, cancelled_id)
        assert cancelled[-1].event == EventType.CANCELLED
        async with http.get(f"/v1/sessions/{cancelled_id}") as response:
            assert (await response.json())["status"] == "cancelled"


async def _create(http: aiohttp.ClientSession, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "tell me a story"}]}
    async with http.post("/v1/sessions", json=body) as response:
        assert response.status == 201, await response.text()
        session_id: str = (await response.json())["id"]
        return session_id


def _events_path(session_id: str) -> str:
    return f"/v1/sessions/{session_id}/events"


async def _events(
    http: aiohttp.ClientSession, session_id: str, headers: dict[str, str] | None = None
) -> list[SseEvent]:
    async with http.get(_events_path(session_id), headers=headers) as response:
        assert response.status == 200, await response.text()
        reader = SseReader(response)
        events = await reader.read_all()
        assert not reader.aborted
        return events
