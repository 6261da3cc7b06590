"""The append sender's pipelines (relay/store/redis/group_commit.py): out before the
replies of those before them, at most PIPELINES_IN_FLIGHT at once, in order, and
written again in order when the connection drops under them, landing once even where
they had run before the drop; a reply that does not come, or a connection that cannot be
opened, fails what is out and nothing else waits for ever.

Against a real redis-server: `DEBUG SLEEP` on another connection holds the server, so
pipelines stay out; a proxy of the test's own (tests/redis_proxy.py), over TCP and
over TLS, cuts the connection under them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from relay.config import StoreSettings
from relay.errors import AppendConflict, StoreUnavailable
from relay.events import SessionStatus
from relay.store.redis import RedisStore, group_commit
from relay.store.redis.group_commit import PIPELINES_IN_FLIGHT
from relay.store.redis.keys import session_keys
from relay.store.redis.scripts import APPEND_SCRIPT
from tests.loop_policies import EVENT_LOOP_POLICY_WARNING, event_loop_policy  # noqa: F401
from tests.redis_proxy import CuttingProxy, TlsCertificates
from tests.redis_server import free_port
from tests.store.redis_probes import record_sends
from tests.store.sessions import delta, new_record, new_session, terminal

# Every test on asyncio's loop and on uvloop: the sender drives the transport of either.
pytestmark = pytest.mark.filterwarnings(EVENT_LOOP_POLICY_WARNING)

SERVER_HELD_S = 0.3


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_url, StoreSettings())
    await new_session(store, events=1)  # both scripts are in the server's cache now
    yield store
    await store.close()


@contextlib.asynccontextmanager
async def server_held(raw: redis.asyncio.Redis) -> AsyncIterator[None]:
    """Redis runs nothing else for SERVER_HELD_S (a `DEBUG SLEEP` on `raw`)."""
    sleeping = asyncio.create_task(raw.execute_command("DEBUG", "SLEEP", SERVER_HELD_S))
    await asyncio.sleep(0.05)  # it has reached the server
    try:
        yield
    finally:
        await sleeping


async def settle_loop() -> None:
    """Loop turns enough for the sender's tasks to write what is queued."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_call_queued_while_a_pipeline_is_out_goes_before_its_reply(
    store: RedisStore, raw: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = [await new_session(store, events=1) for _ in range(PIPELINES_IN_FLIGHT + 1)]
    async with server_held(raw):
        sent = record_sends(monkeypatch)
        appends: list[asyncio.Task[Any]] = []
        for session_id in sessions:
            appends.append(asyncio.create_task(store.append(session_id, [delta(2)])))
            await settle_loop()
        # Two out with no reply yet; the third waits for the first one's reply.
        assert len(sent) == PIPELINES_IN_FLIGHT
        assert not any(append.done() for append in appends)
    records = await asyncio.gather(*appends)
    monkeypatch.undo()
    assert len(sent) == PIPELINES_IN_FLIGHT + 1
    assert [record.last_event_id for record in records] == [2] * len(sessions)


async def test_a_first_append_right_behind_its_creation_lands_after_it(
    store: RedisStore, raw: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = new_record()
    async with server_held(raw):
        sent = record_sends(monkeypatch)
        creating = asyncio.create_task(store.create(record))
        await settle_loop()
        appending = asyncio.create_task(store.append(record.id, [delta(1)]))
        await settle_loop()
        assert len(sent) == 2 and not creating.done()  # both out at once
    await creating
    appended = await appending
    monkeypatch.undo()
    assert appended.last_event_id == 1
    assert await store.read(record.id, 0, 10) == [delta(1)]


async def test_a_creation_needs_no_script_in_the_cache_ahead_of_its_first_append(
    store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    """After a failover, the server may hold the append script (another instance only
    appended since) and not the creation's: the append right behind a creation must
    still find its session."""
    await raw.script_flush()
    await raw.script_load(APPEND_SCRIPT.source)
    record = new_record()
    async with server_held(raw):
        creating = asyncio.create_task(store.create(record))
        await settle_loop()
        appending = asyncio.create_task(store.append(record.id, [delta(1)]))
        await settle_loop()
    await creating
    assert (await appending).last_event_id == 1


@pytest.fixture(params=["tcp", "tls"])
async def proxy(
    request: pytest.FixtureRequest, redis_url: str, tls_certificates: TlsCertificates
) -> AsyncIterator[CuttingProxy]:
    """Over TCP and over TLS: the sender drives the socket of either transport."""
    port = redis.asyncio.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    tls = tls_certificates if request.param == "tls" else None
    proxy = CuttingProxy(int(port), tls=tls)
    await proxy.start()
    yield proxy
    await proxy.close()


async def until(condition: Callable[[], bool], timeout: float = 2) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_the_sender_reads_its_replies_off_the_socket_over_either_transport(
    proxy: CuttingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS too: the sender's protocol replaces redis-py's on asyncio's TLS transport."""
    heard: list[bytes] = []
    data_received = group_commit._Link.data_received

    def counted(self: group_commit._Link, data: bytes) -> None:
        heard.append(data)
        data_received(self, data)

    monkeypatch.setattr(group_commit._Link, "data_received", counted)
    store = RedisStore.from_url(proxy.url(), StoreSettings())
    try:
        session_id = await new_session(store, events=1)
        for event_id in range(2, 6):
            assert (await store.append(session_id, [delta(event_id)])).last_event_id == event_id
        assert len(heard) >= 5  # the creation's reply and each append's
        assert [event.id for event in await store.read(session_id, 0, 10)] == [1, 2, 3, 4, 5]
    finally:
        await store.close()


async def test_pipelines_out_when_the_connection_drops_go_again_in_order(
    proxy: CuttingProxy,
) -> None:
    store = RedisStore.from_url(proxy.url(), StoreSettings())
    try:
        await new_session(store, events=1)  # connected, scripts cached
        record = new_record()
        proxy.hold()
        creating = asyncio.create_task(store.create(record))
        await until(lambda: proxy.held > 0)
        held_creation = proxy.held
        appending = asyncio.create_task(store.append(record.id, [delta(1)]))
        await until(lambda: proxy.held > held_creation)  # both out, neither at the server
        await proxy.cut()
        # Reconnected, and both written again: the creation first, then the append.
        await asyncio.wait_for(creating, 5)
        assert (await asyncio.wait_for(appending, 5)).last_event_id == 1
        assert await store.read(record.id, 0, 10) == [delta(1)]
    finally:
        await store.close()


async def until_true(condition: Callable[[], Awaitable[bool]], timeout: float = 2) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.005)


async def test_pipelines_that_ran_before_the_connection_dropped_land_once(
    proxy: CuttingProxy, raw: redis.asyncio.Redis
) -> None:
    store = RedisStore.from_url(proxy.url(), StoreSettings())
    try:
        await new_session(store, events=1)  # connected, scripts cached
        record = new_record()
        proxy.hold(replies=True)
        creating = asyncio.create_task(store.create(record))
        appending = asyncio.create_task(store.append(record.id, [delta(1)]))
        log_key = session_keys(record.id).log
        await until_true(lambda: raw_has(raw, log_key, 1))  # both ran, neither answered
        await proxy.cut()
        # Written again on a new connection, each finds it ran: nothing changes, and
        # each answers as the first time (the creation did not reset the record).
        await asyncio.wait_for(creating, 5)
        assert (await asyncio.wait_for(appending, 5)).last_event_id == 1
        assert (await store.append(record.id, [delta(2)])).last_event_id == 2
        assert await store.read(record.id, 0, 10) == [delta(1), delta(2)]
    finally:
        await store.close()


async def test_an_append_that_ended_its_session_and_ran_twice_answers_as_it_did(
    proxy: CuttingProxy, raw: redis.asyncio.Redis
) -> None:
    store = RedisStore.from_url(proxy.url(), StoreSettings())
    try:
        session_id = await new_session(store, events=1)
        proxy.hold(replies=True)
        ending = asyncio.create_task(store.append(session_id, [terminal(2)]))
        await until_true(lambda: raw_has(raw, session_keys(session_id).log, 2))
        await proxy.cut()
        ended = await asyncio.wait_for(ending, 5)  # not SessionEnded: it ended it
        assert (ended.last_event_id, ended.status) == (2, SessionStatus.COMPLETED)
        assert [event.id for event in await store.read(session_id, 0, 10)] == [1, 2]
    finally:
        await store.close()


async def test_another_call_with_the_same_events_is_refused_as_ever(
    store: RedisStore,
) -> None:
    session_id = await new_session(store, events=1)
    await store.append(session_id, [delta(2)])
    with pytest.raises(AppendConflict):  # a second writer: its own append id
        await store.append(session_id, [delta(2)])


async def raw_has(raw: redis.asyncio.Redis, log_key: str, events: int) -> bool:
    return int(await raw.xlen(log_key)) == events


async def test_calls_queued_behind_pipelines_that_cannot_connect_each_get_an_answer() -> None:
    """Nothing listens: the pipelines out fail after their reconnects, and the calls
    queued behind them, never written yet, get a try (and an answer) of their own."""
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", StoreSettings())
    try:
        calls = []
        for _ in range(PIPELINES_IN_FLIGHT + 2):  # a loop turn apart: a pipeline each
            calls.append(asyncio.create_task(store.append(new_record().id, [delta(1)])))
            await asyncio.sleep(0)
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    finally:
        await store.close()


async def test_a_reply_that_does_not_come_fails_the_call_and_the_next_goes_on_a_new_connection(
    proxy: CuttingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "SOCKET_TIMEOUT_S", 0.3)
    store = RedisStore.from_url(proxy.url(), StoreSettings())
    try:
        session_id = await new_session(store, events=1)
        proxy.hold(replies=True)  # it runs; its reply never comes back
        with pytest.raises(StoreUnavailable, match=r"no reply within 0\.3 s"):
            await asyncio.wait_for(store.append(session_id, [delta(2)]), 5)
        await proxy.cut()  # forwarding again, on the connection the next call opens
        # Its append had run: the writer's next try finds it there (the id fence).
        record = await asyncio.wait_for(store.append(session_id, [delta(3)]), 5)
        assert record.last_event_id == 3
        assert [event.id for event in await store.read(session_id, 0, 10)] == [1, 2, 3]
    finally:
        await store.close()
