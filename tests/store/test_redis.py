"""What only the Redis store has: its key layout, expiry, shared tails and outages.

All against a real redis-server; the behaviour every store shares is in the contract
suites (test_*_contract.py).
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio
from redis.crc import key_slot

from relay.config import StoreSettings
from relay.errors import AppendConflict, StoreUnavailable
from relay.events import Event, EventType
from relay.store import open_store
from relay.store.redis import RedisStore
from relay.store.redis.boundary import Boundary
from relay.store.redis.keys import LEASE_INDEX_KEY, session_keys
from relay.store.redis.tail import BLOCK_MS, LINGER_READS, SessionTail
from tests.redis_server import RedisServer, require_redis_server
from tests.store.redis_probes import record_sends
from tests.store.sessions import delta, new_record, new_session, terminal


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_url, StoreSettings(retention_s=60, running_ttl_s=600))
    yield store
    await store.close()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A server of this test's own, free to stop and restart."""
    server = RedisServer(require_redis_server())
    server.start()
    yield server
    server.close()


def tail_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("relay tail")]


async def test_open_store_picks_redis_for_a_redis_url(redis_url: str) -> None:
    store = open_store(StoreSettings(url=redis_url))
    assert isinstance(store, RedisStore)
    await store.ping()
    await store.close()


async def test_a_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(require_redis_server(), extra_args=["--unixsocket", str(socket_path)])
    server.start()
    try:
        store = RedisStore.from_url(f"unix://{socket_path}?db=2", StoreSettings())
        session_id = await new_session(store, events=1)
        await store.close()
        async with redis.asyncio.Redis(unix_socket_path=str(socket_path), db=2) as client:
            assert await client.exists(session_keys(session_id).meta) == 1
    finally:
        server.close()


async def test_all_keys_of_a_session_share_one_hash_tag_and_slot(
    store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    record = new_record()
    await store.create(record, b"{}")  # kept for a takeover
    session_id = record.id
    await store.append(session_id, [delta(1), delta(2)])
    await store.append_signal(session_id, b"{}")  # the signal log exists from its first
    keys = {key.decode() async for key in raw.scan_iter("relay:*")} - {LEASE_INDEX_KEY}
    assert keys == set(session_keys(session_id))  # besides the one index all sessions share
    assert all(f"{{{session_id}}}" in key for key in keys)
    assert len({key_slot(key.encode()) for key in keys}) == 1


async def test_event_n_is_stream_entry_n_0_its_one_field_named_by_its_type(
    store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    session_id = await new_session(store, events=2)
    entries = await raw.xrange(session_keys(session_id).log)
    assert entries == [
        (b"1-0", {b"delta": b'{"text":"word"}'}),
        (b"2-0", {b"delta": b'{"text":"word"}'}),
    ]


async def test_a_log_written_in_the_earlier_two_field_layout_reads_and_goes_on(
    store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    """A session stored by a relay from before the one-field layout (fields `t`, `d`)
    replays after an upgrade, and the new instance appends after it."""
    session_id = await new_session(store)
    log_key = session_keys(session_id).log
    await raw.xadd(log_key, {"t": "delta", "d": b'{"text":"old"}'}, id="1-0")
    await raw.hset(session_keys(session_id).meta, "last_event_id", "1")
    await store.append(session_id, [delta(2)])
    events = await store.read(session_id, 0, 10)
    assert [(event.id, event.type, bytes(event.data)) for event in events] == [
        (1, EventType.DELTA, b'{"text":"old"}'),
        (2, EventType.DELTA, bytes(delta(2).data)),
    ]


async def test_keys_expire_after_running_ttl_then_after_retention(
    store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    session_id = await new_session(store)
    keys = session_keys(session_id)
    assert 590_000 < await raw.pttl(keys.meta) <= 600_000
    await store.append_signal(session_id, b"{}")  # before any event: the record's expiry
    assert 590_000 < await raw.pttl(keys.signals) <= 600_000
    await store.append(session_id, [delta(1)])
    assert 590_000 < await raw.pttl(keys.log) <= 600_000
    await store.append(session_id, [terminal(2)])
    for key in (keys.log, keys.meta, keys.signals):  # the lease key has its own expiry
        assert 50_000 < await raw.pttl(key) <= 60_000


async def test_a_running_session_keeps_its_keys_while_appends_come(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    ttl_s = 0.5
    store = RedisStore.from_url(redis_url, StoreSettings(running_ttl_s=ttl_s))
    session_id = await new_session(store)
    keys = session_keys(session_id)
    await raw.config_resetstat()
    for event_id in range(1, 31):  # 3 s: six times the expiry
        await store.append(session_id, [delta(event_id)])
        for key in (keys.meta, keys.log):  # never less than the expiry after an append
            assert await raw.pttl(key) > ttl_s * 1000 - 50
        await asyncio.sleep(0.1)
    renewals = (await raw.info("commandstats"))["cmdstat_pexpire"]["calls"]
    assert renewals <= 2 * 10  # both keys, about once a second (3 s), not on 30 appends
    await asyncio.sleep(ttl_s + 1.2)  # the expiry, and the slack of the last renewal
    assert await raw.exists(keys.meta, keys.log) == 0
    await store.close()


async def test_the_end_always_sets_the_retention(redis_url: str, raw: redis.asyncio.Redis) -> None:
    store = RedisStore.from_url(redis_url, StoreSettings(running_ttl_s=600, retention_s=60))
    session_id = await new_session(store)
    keys = session_keys(session_id)
    for event_id in range(1, 6):  # renewed on the first two only, then skipped
        await store.append(session_id, [delta(event_id)])
    assert await raw.pttl(keys.log) > 600_000
    await store.append(session_id, [terminal(6)])
    for key in (keys.log, keys.meta):
        assert 50_000 < await raw.pttl(key) <= 60_000
    await store.close()


async def test_an_append_never_shortens_the_expiry(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    first = RedisStore.from_url(redis_url, StoreSettings(running_ttl_s=600))
    second = RedisStore.from_url(redis_url, StoreSettings(running_ttl_s=600))
    session_id = await new_session(first, events=1)
    await first.append(session_id, [delta(2)])  # a renewal after the first adds the slack
    keys = session_keys(session_id)
    assert await raw.pttl(keys.log) > 600_000
    record = await second.append(session_id, [delta(3)])  # knows nothing of the expiry
    assert await raw.pttl(keys.log) > 600_000
    assert record == await second.get(session_id)  # the whole record, asked for
    # The first instance's short reply, after an append it did not see.
    assert await first.append(session_id, [delta(4)]) == await first.get(session_id)
    await first.close()
    await second.close()


async def test_creating_a_session_is_one_round_trip(
    store: RedisStore, raw: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await new_session(store)  # connected
    sent = record_sends(monkeypatch)
    session_id = await new_session(store)
    monkeypatch.undo()
    assert len(sent) == 1
    keys = session_keys(session_id)
    assert await raw.exists(keys.meta, keys.lease) == 2
    assert await raw.zscore(LEASE_INDEX_KEY, session_id) is not None
    assert await store.lapsed_leases(10) == []


async def test_a_session_with_its_first_events_is_one_round_trip_and_followed_without_a_read(
    store: RedisStore, raw: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await new_session(store)  # connected
    record = new_record()
    sent = record_sends(monkeypatch)
    await store.create(record, b"{}", first=[delta(1)])
    # The creator's subscriber: the first events, then the next append, with no read.
    assert await store.wait(record.id, 0, 10, timeout=5) == [delta(1)]
    waiting = asyncio.create_task(store.wait(record.id, 1, 10, timeout=5))
    await asyncio.sleep(0.05)
    await store.append(record.id, [delta(2)])
    assert await waiting == [delta(2)]
    monkeypatch.undo()
    assert len(sent) == 2  # the creation, the append
    keys = session_keys(record.id)
    assert await raw.exists(keys.meta, keys.lease, keys.log, keys.takeover) == 4
    for key in (keys.meta, keys.log, keys.takeover):  # running: they expire as the record does
        assert 0 < await raw.pttl(key) <= StoreSettings().running_ttl_s * 1000
    assert await raw.zscore(LEASE_INDEX_KEY, record.id) is not None


async def test_a_creator_that_first_waits_after_the_first_token_is_stored_needs_no_read(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generation starts before its creation is answered, so its first token may be
    stored before the creator's own stream first waits, from the start."""
    record = new_record()
    await store.create(record, first=[delta(1)])
    await store.append(record.id, [delta(2), delta(3)])
    sent = record_sends(monkeypatch)
    assert await store.wait(record.id, 0, 10, timeout=5) == [delta(1), delta(2), delta(3)]
    monkeypatch.undo()
    assert sent == []


async def test_a_waiter_here_has_the_events_before_their_appender_resumes(
    store: RedisStore,
) -> None:
    """The append sender hands a stored batch to this instance's waiters as its reply
    comes in, a loop turn before the task that appended it goes on: a subscriber writes
    a first token without waiting for the generation's next step."""
    session_id = await new_session(store, events=1)
    waiting = asyncio.create_task(store.wait(session_id, 1, 10, timeout=5))
    await asyncio.sleep(0.05)  # parked on the tail
    await store.append(session_id, [delta(2)])
    assert waiting.done()  # no loop turn since the append returned
    assert waiting.result() == [delta(2)]


async def test_appends_that_queue_meanwhile_share_one_round_trip(
    store: RedisStore, raw: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = [await new_session(store, events=1) for _ in range(40)]
    other = await new_session(store, events=1)
    sent = record_sends(monkeypatch)
    appends = [store.append(session_id, [delta(2), delta(3)]) for session_id in sessions]
    refused = store.append(other, [delta(5)])  # its own error, not the others'
    *records, refusal = await asyncio.gather(*appends, refused, return_exceptions=True)
    monkeypatch.undo()
    assert len(sent) <= 2  # the first append alone, then everything that queued meanwhile
    assert isinstance(refusal, AppendConflict)
    assert [record.last_event_id for record in records] == [3] * len(sessions)  # type: ignore[union-attr]
    for session_id in sessions:
        assert await raw.xlen(session_keys(session_id).log) == 3
        assert await store.read(session_id, 0, 10) == [delta(1), delta(2), delta(3)]


async def test_creations_that_queue_meanwhile_share_one_round_trip_with_appends(
    store: RedisStore, raw: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await new_session(store)  # connected
    await new_session(store, events=1)
    records = [new_record() for _ in range(40)]
    sent = record_sends(monkeypatch)
    creations = [asyncio.ensure_future(store.create(record)) for record in records]
    # Queued right behind its creation, before the creation's reply: it cannot overtake it.
    first_append = asyncio.ensure_future(store.append(records[-1].id, [delta(1)]))
    await asyncio.gather(*creations)
    appended = await first_append
    monkeypatch.undo()
    assert len(sent) <= 2  # the first creation alone, then everything that queued meanwhile
    assert appended.last_event_id == 1
    for record in records:
        keys = session_keys(record.id)
        assert await raw.exists(keys.meta, keys.lease) == 2
        assert await raw.zscore(LEASE_INDEX_KEY, record.id) is not None
    assert await store.read(records[-1].id, 0, 10) == [delta(1)]


async def test_an_append_whose_caller_is_cancelled_does_not_hold_up_the_others(
    store: RedisStore,
) -> None:
    first, second = await new_session(store, events=1), await new_session(store, events=1)
    cancelled = asyncio.create_task(store.append(first, [delta(2)]))
    kept = asyncio.create_task(store.append(second, [delta(2)]))
    cancelled.cancel()
    assert (await kept).last_event_id == 2
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (await store.append(second, [delta(3)])).last_event_id == 3


async def test_appends_after_close_fail_as_unavailable(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, StoreSettings())
    session_id = await new_session(store, events=1)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.append(session_id, [delta(2)])
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "relay redis appends"]


async def test_waiters_share_a_bounded_number_of_connections(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    store = RedisStore.from_url(redis_url, StoreSettings(max_connections=4, max_blocking_reads=2))
    session_id = await new_session(store, events=1)
    waiters = [asyncio.create_task(store.wait(session_id, 1, 100, timeout=10)) for _ in range(200)]
    await asyncio.sleep(0.5)
    assert not any(waiter.done() for waiter in waiters)
    assert len(tail_tasks()) == 1
    # The store's pools plus this test's own client.
    assert len(await raw.client_list()) <= 4 + 2 + 1
    await store.append(session_id, [delta(2)])
    results = await asyncio.wait_for(asyncio.gather(*waiters), 2)
    assert all(result == [delta(2)] for result in results)
    await store.close()


async def test_the_tail_stops_when_its_waiters_are_gone(store: RedisStore) -> None:
    session_id = await new_session(store, events=1)
    assert await store.wait(session_id, 1, 100, timeout=0.1) == []
    assert len(tail_tasks()) == 1
    # The read in flight, then LINGER_READS more for returning waiters, then it stops.
    await asyncio.sleep((1 + LINGER_READS) * BLOCK_MS / 1000 + 0.3)
    assert tail_tasks() == []


async def test_a_session_expiring_under_a_waiter_just_times_out(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, StoreSettings(running_ttl_s=0.2))
    session_id = await new_session(store, events=1)
    assert await store.wait(session_id, 1, 100, timeout=0.6) == []
    assert await store.get(session_id) is None
    await store.close()


async def test_close_cancels_the_tails(store: RedisStore) -> None:
    session_id = await new_session(store, events=1)
    waiting = asyncio.create_task(store.wait(session_id, 1, 100, timeout=10))
    await asyncio.sleep(0.1)
    await store.close()
    assert await waiting == []
    assert tail_tasks() == []


async def test_a_waiter_behind_the_tail_is_sent_back_to_read() -> None:
    """The tail has handed out events up to its cursor; a late joiner may need them."""
    reads: asyncio.Queue[list[Event]] = asyncio.Queue()
    tail = SessionTail("s_test", 3, lambda cursor: reads.get(), lambda tail: None)
    assert tail.join(after=2, limit=100) is None
    waiter = tail.join(after=3, limit=100)
    assert waiter is not None
    await reads.put([delta(4), delta(5)])
    assert await asyncio.wait_for(waiter.future, 1) == [delta(4), delta(5)]
    assert tail.join(after=4, limit=100) is None
    await tail.aclose()


async def test_appended_events_reach_the_tail_once_and_in_order() -> None:
    """Handed over by the append, then brought again by the read that was in flight."""
    reads: asyncio.Queue[list[Event]] = asyncio.Queue()
    tail = SessionTail("s_test", 3, lambda cursor: reads.get(), lambda tail: None)
    first = tail.join(after=3, limit=100)
    assert first is not None
    await asyncio.sleep(0)  # its read is in flight
    tail.take_appended([delta(4), delta(5)])
    assert first.future.result() == [delta(4), delta(5)]
    second = tail.join(after=5, limit=100)
    assert second is not None
    await reads.put([delta(4), delta(5)])  # the read in flight: nothing new
    await reads.put([delta(4), delta(5), delta(6)])
    assert await asyncio.wait_for(second.future, 1) == [delta(6)]
    third = tail.join(after=6, limit=100)
    assert third is not None
    tail.take_appended([delta(8)])  # 7 came from elsewhere: the read brings both
    assert not third.future.done()
    tail.take_appended([delta(6)])  # already handed out
    assert not third.future.done()
    await reads.put([delta(7), delta(8)])
    assert await asyncio.wait_for(third.future, 1) == [delta(7), delta(8)]
    assert tail.recent_after(3, 100) == [delta(n) for n in range(4, 9)]
    await tail.aclose()


class _ScriptedReads:
    """A tail's blocking read, answered by the test: records each cursor it reads after."""

    def __init__(self) -> None:
        self.cursors: list[int] = []
        self._replies: asyncio.Queue[list[Event]] = asyncio.Queue()

    async def read_new(self, cursor: int) -> list[Event]:
        self.cursors.append(cursor)
        return await self._replies.get()

    async def put(self, events: list[Event]) -> None:
        await self._replies.put(events)


async def test_while_appends_here_keep_coming_the_tail_does_not_read() -> None:
    """Each local append would otherwise answer the blocking read with what the append
    already handed over: a round trip per append for nothing."""
    reads = _ScriptedReads()
    cursors = reads.cursors
    tail = SessionTail("s_test", 3, reads.read_new, lambda tail: None, append_quiet_s=0.3)
    first = tail.join(after=3, limit=100)
    assert first is not None
    await asyncio.sleep(0)  # its read is in flight
    tail.take_appended([delta(4)])
    await reads.put([delta(4)])  # the read in flight brings it again
    for n in range(5, 9):  # more appends here, each handed over at once
        waiter = tail.join(after=n - 1, limit=100)
        assert waiter is not None
        tail.take_appended([delta(n)])
        assert waiter.future.result() == [delta(n)]
        await asyncio.sleep(0.05)
    assert cursors == [3]  # no read since the one in flight
    late = tail.join(after=8, limit=100)  # event 9 comes from another instance
    assert late is not None
    await reads.put([delta(9)])
    assert await asyncio.wait_for(late.future, 1) == [delta(9)]
    assert cursors[:2] == [3, 8]  # one read, once the quiet time had passed
    await tail.aclose()


async def test_a_local_append_that_the_read_brought_first_still_quiets_the_tail() -> None:
    reads = _ScriptedReads()
    cursors = reads.cursors
    tail = SessionTail("s_test", 3, reads.read_new, lambda tail: None, append_quiet_s=0.3)
    waiter = tail.join(after=3, limit=100)
    assert waiter is not None
    await reads.put([delta(4)])  # the read answers before the append's own reply is in
    assert await asyncio.wait_for(waiter.future, 1) == [delta(4)]
    tail.take_appended([delta(4)])  # nothing new, but appends here keep coming
    again = tail.join(after=4, limit=100)
    assert again is not None
    await reads.put([delta(5)])  # the read already in flight
    assert await asyncio.wait_for(again.future, 1) == [delta(5)]
    await asyncio.sleep(0.1)
    assert cursors == [3, 4]  # no read after it: the tail is quiet
    await tail.aclose()


async def test_a_waiter_on_the_appending_instance_gets_each_event_once(
    store: RedisStore,
) -> None:
    session_id = await new_session(store, events=1)
    received: list[int] = []

    async def follow() -> None:
        while not received or received[-1] < 60:
            events = await store.wait(session_id, received[-1] if received else 1, 100, 5)
            received.extend(event.id for event in events)

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.1)  # parked on the tail
    for event_id in range(2, 61):
        await store.append(session_id, [delta(event_id)])
        if event_id % 7 == 0:
            await asyncio.sleep(0.01)  # let some reads land between appends
    await asyncio.wait_for(following, 5)
    assert received == list(range(2, 61))


# --- outages ----------------------------------------------------------------------------


async def test_a_stopped_server_is_unavailable(own_redis_server: RedisServer) -> None:
    store = RedisStore.from_url(own_redis_server.url, StoreSettings())
    session_id = await new_session(store, events=1)
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert time.monotonic() - started < 2
    with pytest.raises(StoreUnavailable):
        await store.get(session_id)
    with pytest.raises(StoreUnavailable):
        await store.append(session_id, [delta(2)])
    with pytest.raises(StoreUnavailable):
        await store.read(session_id, 0, 100)
    with pytest.raises(StoreUnavailable):
        await store.wait(session_id, 1, 100, timeout=1)
    await store.close()


async def test_a_parked_waiter_hears_of_the_outage(own_redis_server: RedisServer) -> None:
    store = RedisStore.from_url(own_redis_server.url, StoreSettings())
    session_id = await new_session(store, events=1)
    waiting = asyncio.create_task(store.wait(session_id, 1, 100, timeout=10))
    await asyncio.sleep(0.2)
    own_redis_server.stop()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(waiting, 3)
    await store.close()


async def test_the_store_recovers_when_the_server_is_back(own_redis_server: RedisServer) -> None:
    store = RedisStore.from_url(own_redis_server.url, StoreSettings())
    await new_session(store, events=1)
    own_redis_server.restart()  # empty again: no data, no cached script
    session_id = await new_session(store, events=2)
    record = await store.append(session_id, [terminal(3, EventType.CANCELLED)])
    assert record.last_event_id == 3
    await store.close()


async def test_a_frozen_server_is_unavailable_within_one_socket_timeout(
    own_redis_server: RedisServer,
) -> None:
    store = RedisStore.from_url(own_redis_server.url, StoreSettings())
    session_id = await new_session(store, events=1)
    own_redis_server.freeze()
    try:
        for call in (store.create(new_record()), store.get(session_id)):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call
            assert time.monotonic() - started < 3  # SOCKET_TIMEOUT_S is 2 s; never retried
    finally:
        own_redis_server.thaw()
    assert (await store.get(session_id)) is not None
    await store.close()


async def test_an_os_error_inside_the_client_is_unavailable() -> None:
    """What redis-py let through at the descriptor limit reached the lease reaper raw."""
    with pytest.raises(StoreUnavailable, match="Too many open files") as raised:
        async with Boundary(1, None):
            raise OSError(errno.EMFILE, "Too many open files")
    assert isinstance(raised.value.__cause__, OSError)
