"""The `EventLog` contract: every store passes the same tests.

Stores: the memory store, the Redis store on fakeredis (its Lua runs on lupa), and the
Redis store on real servers in each shape a URL can name: one redis-server, a master
found through a Sentinel, and a three-node Redis Cluster. The log is the backend's:
another store object on it (another instance) reads, writes and waits on the same one.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from relay.errors import AppendConflict, EventLimitReached, SessionEnded, SessionNotFound
from relay.events import Event, EventType, SessionStatus
from relay.session import SessionRecord, new_session_id
from relay.store import Store
from relay.store.base import check_batch
from tests.store.conftest import PeerFactory, StoreFactory
from tests.store.sessions import delta, new_record, new_session, terminal

# JSON as a producer might send it: odd spacing, escapes and raw UTF-8 must survive as is.
ODD_JSON = b'{ "text" : "h\\u00e9llo \xe2\x9c\x93\\n",  "n":1 }'
# Generous for a wake-up that is pushed, far below a Redis tail's BLOCK_MS of polling.
PROMPTLY_S = 0.4


# --- create and get -----------------------------------------------------------------


async def test_get_returns_the_created_record(store: Store) -> None:
    record = new_record()
    await store.create(record)
    assert await store.get(record.id) == record


async def test_the_client_a_session_belongs_to_round_trips(store: Store) -> None:
    record = msgspec.structs.replace(new_record(), client="web-frontend")
    await store.create(record)
    assert await store.get(record.id) == record
    appended = await store.append(record.id, [delta(1), terminal(2)])
    assert appended.client == "web-frontend"
    assert (await store.get(record.id)) == appended


async def test_a_session_created_with_its_first_events_has_them_in_its_log(
    store: Store, open_peer: PeerFactory
) -> None:
    record = new_record()
    stored = await store.create(record, first=[delta(1), delta(2)])
    assert stored == msgspec.structs.replace(record, last_event_id=2)
    peer = await open_peer(store)
    for instance in (store, peer):
        assert await instance.get(record.id) == stored
        assert await instance.read(record.id, 0, 100) == [delta(1), delta(2)]
        assert await instance.wait(record.id, 0, 100, timeout=5) == [delta(1), delta(2)]
    # The next ids follow on, whichever instance appends, and the fence holds.
    with pytest.raises(AppendConflict):
        await peer.append(record.id, [delta(1)])
    assert (await peer.append(record.id, [delta(3)])).last_event_id == 3
    assert (await store.append(record.id, [terminal(4)])).status is SessionStatus.COMPLETED
    assert [event.id for event in await store.read(record.id, 0, 100)] == [1, 2, 3, 4]


async def test_a_session_created_without_first_events_is_empty(store: Store) -> None:
    record = new_record()
    assert await store.create(record) == record
    assert await store.read(record.id, 0, 100) == []


async def test_a_waiter_on_another_instance_hears_of_the_appends_after_the_first_events(
    store: Store, open_peer: PeerFactory
) -> None:
    reader = await open_peer(store)
    record = new_record()
    await store.create(record, first=[delta(1)])
    assert await reader.wait(record.id, 0, 100, timeout=5) == [delta(1)]
    waiting = asyncio.create_task(reader.wait(record.id, 1, 100, timeout=10))
    await asyncio.sleep(0.2)
    await store.append(record.id, [delta(2)])
    assert await asyncio.wait_for(waiting, 1) == [delta(2)]


async def test_a_waiter_on_the_creating_instance_follows_from_the_first_events(
    store: Store,
) -> None:
    record = new_record()
    await store.create(record, first=[delta(1)])
    assert await store.wait(record.id, 0, 100, timeout=5) == [delta(1)]
    waiting = asyncio.create_task(store.wait(record.id, 1, 100, timeout=10))
    await asyncio.sleep(0.05)
    await store.append(record.id, [delta(2), terminal(3)])
    assert await asyncio.wait_for(waiting, PROMPTLY_S) == [delta(2), terminal(3)]
    assert await store.wait(record.id, 3, 100, timeout=5) == []


@pytest.mark.parametrize(
    "first",
    [[delta(2)], [delta(1), delta(3)], [delta(1), terminal(2)]],
    ids=["not from 1", "not consecutive", "ended"],
)
async def test_first_events_no_store_accepts_are_refused_before_anything_is_stored(
    store: Store, first: list[Event]
) -> None:
    record = new_record()
    with pytest.raises(ValueError):
        await store.create(record, first=first)
    assert await store.get(record.id) is None


async def test_get_of_an_unknown_session_is_none(store: Store) -> None:
    assert await store.get(new_session_id()) is None


# --- append and read ----------------------------------------------------------------


async def test_events_read_back_byte_identical(store: Store) -> None:
    session_id = await new_session(store)
    events = [
        Event(1, EventType.STATUS, msgspec.Raw(b'{"state":"generating"}')),
        Event(2, EventType.DELTA, msgspec.Raw(ODD_JSON)),
        Event(3, EventType.USAGE, msgspec.Raw(b'{"input_tokens":1,"output_tokens":2}')),
    ]
    await store.append(session_id, events)
    read = await store.read(session_id, 0, 100)
    assert read == events
    assert [bytes(event.data) for event in read] == [bytes(event.data) for event in events]


async def test_append_returns_the_new_record(store: Store) -> None:
    record = new_record()
    await store.create(record)
    appended = await store.append(record.id, [delta(1), delta(2)])
    assert appended.last_event_id == 2
    assert appended.status is SessionStatus.RUNNING
    assert appended.updated_at >= record.updated_at
    assert await store.get(record.id) == appended


async def test_batches_continue_the_log(store: Store) -> None:
    session_id = await new_session(store, events=2)
    await store.append(session_id, [delta(3)])
    await store.append(session_id, [delta(4), delta(5)])
    assert [event.id for event in await store.read(session_id, 0, 100)] == [1, 2, 3, 4, 5]


async def test_read_after_and_limit(store: Store) -> None:
    session_id = await new_session(store, events=10)
    assert [event.id for event in await store.read(session_id, 3, 4)] == [4, 5, 6, 7]
    assert [event.id for event in await store.read(session_id, 8, 100)] == [9, 10]
    assert await store.read(session_id, 10, 100) == []
    assert await store.read(session_id, 50, 100) == []
    assert await store.read(session_id, 0, 0) == []


async def test_a_negative_after_means_from_the_start(store: Store) -> None:
    session_id = await new_session(store)
    assert await store.wait(session_id, -1, 100, timeout=0.2) == []
    await store.append(session_id, [delta(1)])
    assert [event.id for event in await store.read(session_id, -5, 100)] == [1]
    assert [event.id for event in await store.wait(session_id, -5, 100, timeout=5)] == [1]


async def test_read_of_an_unknown_session_is_empty(store: Store) -> None:
    assert await store.read(new_session_id(), 0, 100) == []


# --- what append refuses -------------------------------------------------------------


async def test_append_to_an_unknown_session(store: Store) -> None:
    with pytest.raises(SessionNotFound):
        await store.append(new_session_id(), [delta(1)])


@pytest.mark.parametrize("first_id", [1, 2, 4, 7], ids=["replay-1", "replay-2", "gap", "far"])
async def test_append_that_does_not_continue_the_log_conflicts(store: Store, first_id: int) -> None:
    session_id = await new_session(store, events=2)
    with pytest.raises(AppendConflict):
        await store.append(session_id, [delta(first_id)])
    assert [event.id for event in await store.read(session_id, 0, 100)] == [1, 2]


async def test_two_writers_of_the_same_id_exactly_one_wins(store: Store) -> None:
    session_id = await new_session(store, events=1)
    results = await asyncio.gather(
        store.append(session_id, [delta(2, "first writer"), delta(3)]),
        store.append(session_id, [delta(2, "second writer")]),
        return_exceptions=True,
    )
    assert sum(isinstance(result, AppendConflict) for result in results) == 1
    assert sum(isinstance(result, SessionRecord) for result in results) == 1
    log = await store.read(session_id, 0, 100)
    assert [event.id for event in log] == list(range(1, len(log) + 1))


def test_batches_no_store_could_accept_are_value_errors() -> None:
    for batch in ([], [delta(1), delta(3)], [terminal(1), delta(2)]):
        with pytest.raises(ValueError):
            check_batch(batch)


async def test_a_terminal_event_must_be_the_last_of_its_batch(store: Store) -> None:
    session_id = await new_session(store)
    with pytest.raises(ValueError):
        await store.append(session_id, [delta(1), terminal(2), delta(3)])
    assert await store.read(session_id, 0, 100) == []


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        (EventType.DONE, SessionStatus.COMPLETED),
        (EventType.ERROR, SessionStatus.FAILED),
        (EventType.CANCELLED, SessionStatus.CANCELLED),
    ],
)
async def test_a_terminal_event_ends_the_session(
    store: Store, event_type: EventType, status: SessionStatus
) -> None:
    session_id = await new_session(store, events=1)
    record = await store.append(session_id, [delta(2), terminal(3, event_type)])
    assert record.status is status
    assert record.last_event_id == 3
    assert await store.get(session_id) == record


async def test_nothing_is_appended_after_the_terminal_event(store: Store) -> None:
    session_id = await new_session(store, events=1)
    await store.append(session_id, [terminal(2)])
    with pytest.raises(SessionEnded):
        await store.append(session_id, [delta(3)])
    with pytest.raises(SessionEnded):
        await store.append(session_id, [terminal(3, EventType.CANCELLED)])
    assert [event.id for event in await store.read(session_id, 0, 100)] == [1, 2]
    record = await store.get(session_id)
    assert record is not None and record.status is SessionStatus.COMPLETED


async def test_the_last_id_under_the_cap_is_kept_for_the_terminal_event(
    make_store: StoreFactory,
) -> None:
    store = await make_store(max_events_per_session=4)
    session_id = await new_session(store, events=3)
    with pytest.raises(EventLimitReached):
        await store.append(session_id, [delta(4)])
    record = await store.append(session_id, [terminal(4, EventType.ERROR)])
    assert record.status is SessionStatus.FAILED
    assert [event.id for event in await store.read(session_id, 0, 100)] == [1, 2, 3, 4]


async def test_a_batch_over_the_cap_appends_nothing(make_store: StoreFactory) -> None:
    store = await make_store(max_events_per_session=4)
    session_id = await new_session(store, events=1)
    with pytest.raises(EventLimitReached):
        await store.append(session_id, [delta(2), delta(3), delta(4)])
    with pytest.raises(EventLimitReached):
        await store.append(session_id, [delta(2), delta(3), delta(4), terminal(5)])
    assert [event.id for event in await store.read(session_id, 0, 100)] == [1]
    await store.append(session_id, [delta(2), delta(3), terminal(4)])


# --- wait -----------------------------------------------------------------------------


async def test_wait_returns_existing_events_at_once(store: Store) -> None:
    session_id = await new_session(store, events=3)
    started = time.monotonic()
    events = await store.wait(session_id, 1, 100, timeout=5)
    assert [event.id for event in events] == [2, 3]
    assert time.monotonic() - started < PROMPTLY_S


async def test_wait_respects_the_limit(store: Store) -> None:
    session_id = await new_session(store, events=5)
    assert [event.id for event in await store.wait(session_id, 0, 2, timeout=5)] == [1, 2]


async def test_wait_wakes_on_an_append_from_another_task(store: Store) -> None:
    session_id = await new_session(store, events=1)
    waiting = asyncio.create_task(store.wait(session_id, 1, 100, timeout=10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    appended_at = time.monotonic()
    await store.append(session_id, [delta(2, "late")])
    events = await waiting
    assert time.monotonic() - appended_at < PROMPTLY_S
    assert events == [delta(2, "late")]


async def test_wait_returns_nothing_after_the_timeout(store: Store) -> None:
    session_id = await new_session(store, events=1)
    started = time.monotonic()
    assert await store.wait(session_id, 1, 100, timeout=0.3) == []
    assert 0.25 <= time.monotonic() - started < 0.3 + PROMPTLY_S


async def test_many_waiters_get_the_same_events(store: Store) -> None:
    session_id = await new_session(store, events=1)
    waiters = [asyncio.create_task(store.wait(session_id, 1, 100, timeout=10)) for _ in range(50)]
    await asyncio.sleep(0.2)
    batch = [delta(2, "a"), delta(3, "b")]
    await store.append(session_id, batch)
    results = await asyncio.wait_for(asyncio.gather(*waiters), PROMPTLY_S * 2)
    assert all(result == batch for result in results)


async def test_waiters_at_different_points_each_get_what_follows_theirs(store: Store) -> None:
    session_id = await new_session(store, events=1)
    first = asyncio.create_task(store.wait(session_id, 1, 100, timeout=10))
    await asyncio.sleep(0.1)
    await store.append(session_id, [delta(2)])
    assert [event.id for event in await first] == [2]
    second = asyncio.create_task(store.wait(session_id, 2, 100, timeout=10))
    behind = asyncio.create_task(store.wait(session_id, 1, 100, timeout=10))
    await asyncio.sleep(0.1)
    assert [event.id for event in await behind] == [2]
    await store.append(session_id, [delta(3)])
    assert [event.id for event in await second] == [3]


async def test_wait_on_an_ended_session_does_not_park(store: Store) -> None:
    session_id = await new_session(store, events=1)
    await store.append(session_id, [terminal(2)])
    started = time.monotonic()
    assert await store.wait(session_id, 2, 100, timeout=5) == []
    assert await store.wait(session_id, 9, 100, timeout=5) == []
    assert time.monotonic() - started < PROMPTLY_S


async def test_wait_beyond_the_end_returns_once_the_session_ends(store: Store) -> None:
    session_id = await new_session(store, events=1)
    waiting = asyncio.create_task(store.wait(session_id, 5, 100, timeout=10))
    await asyncio.sleep(0.2)
    ended_at = time.monotonic()
    await store.append(session_id, [terminal(2)])
    assert await waiting == []
    assert time.monotonic() - ended_at < PROMPTLY_S


async def test_wait_on_an_unknown_session_is_empty(store: Store) -> None:
    assert await store.wait(new_session_id(), 0, 100, timeout=5) == []


async def test_close_wakes_the_waiters(make_store: StoreFactory) -> None:
    store = await make_store()
    session_id = await new_session(store, events=1)
    waiting = asyncio.create_task(store.wait(session_id, 1, 100, timeout=10))
    await asyncio.sleep(0.2)
    await store.close()
    assert await asyncio.wait_for(waiting, PROMPTLY_S) == []


# --- another instance on the same backend -----------------------------------------------


async def test_another_instance_reads_what_one_wrote(store: Store, open_peer: PeerFactory) -> None:
    peer = await open_peer(store)
    record = new_record()
    await store.create(record)
    appended = await store.append(record.id, [delta(1), delta(2)])
    assert await peer.get(record.id) == appended
    assert await peer.read(record.id, 0, 100) == [delta(1), delta(2)]


async def test_a_second_instance_is_fenced_off(store: Store, open_peer: PeerFactory) -> None:
    second = await open_peer(store)
    session_id = await new_session(store, events=1)
    await store.append(session_id, [delta(2)])
    with pytest.raises(AppendConflict):
        await second.append(session_id, [delta(2)])
    assert (await second.append(session_id, [delta(3)])).last_event_id == 3


async def test_an_append_on_one_instance_wakes_a_waiter_on_another(
    store: Store, open_peer: PeerFactory
) -> None:
    reader = await open_peer(store)
    session_id = await new_session(store, events=1)
    waiting = asyncio.create_task(reader.wait(session_id, 1, 100, timeout=10))
    await asyncio.sleep(0.2)
    await store.append(session_id, [delta(2)])
    assert await asyncio.wait_for(waiting, 1) == [delta(2)]


# --- retention --------------------------------------------------------------------------


async def test_a_finished_session_is_gone_after_the_retention(make_store: StoreFactory) -> None:
    store = await make_store(retention_s=0.2)
    session_id = await new_session(store, events=1)
    await store.append(session_id, [terminal(2)])
    assert await store.get(session_id) is not None
    await asyncio.sleep(0.4)
    assert await store.get(session_id) is None
    assert await store.read(session_id, 0, 100) == []
    assert await store.wait(session_id, 0, 100, timeout=5) == []
    with pytest.raises(SessionNotFound):
        await store.append(session_id, [delta(3)])


async def test_a_running_session_outlives_the_retention(make_store: StoreFactory) -> None:
    store = await make_store(retention_s=0.1)
    session_id = await new_session(store, events=1)
    await asyncio.sleep(0.3)
    assert await store.get(session_id) is not None
    assert len(await store.read(session_id, 0, 100)) == 1


# --- an external producer's batches ----------------------------------------------------


async def test_a_producer_batch_records_its_seq_and_ids_with_the_events(
    store: Store, open_peer: PeerFactory
) -> None:
    session_id = await new_session(store, events=2)
    appended = await store.append_batch(session_id, 4, [delta(3), delta(4), terminal(5)])
    expected = (4, 3, 5, 5, SessionStatus.COMPLETED)
    for record in (appended, await (await open_peer(store)).get(session_id)):
        assert record is not None
        seen = (record.producer_seq, record.producer_first_id, record.producer_last_id)
        assert (*seen, record.last_event_id, record.status) == expected


async def test_a_producer_batch_is_fenced_like_any_append(store: Store) -> None:
    session_id = await new_session(store, events=1)
    await store.append_batch(session_id, 1, [delta(2)])
    with pytest.raises(AppendConflict):
        await store.append_batch(session_id, 2, [delta(2)])
    record = await store.get(session_id)
    assert record is not None and (record.producer_seq, record.last_event_id) == (1, 2)
    assert (await store.append(session_id, [delta(3)])).producer_seq == 1  # plain: kept
