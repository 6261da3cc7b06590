"""The takeover part of the store contract: every store passes the same tests.

A session may be created with what a takeover needs (opaque bytes), kept beside its
record while it runs and dropped when it ends; a lapsed lease is claimed atomically, so
that of the instances claiming it at once exactly one wins, at most `max_takeovers`
times per session.
"""

from __future__ import annotations

import asyncio

from relay.store import Store
from tests.store.conftest import PeerFactory, StoreFactory
from tests.store.sessions import delta, new_record, new_session, terminal

TTL_S = 0.3
LAPSE_S = TTL_S + 0.2
TICKET = b'{"upstream":"mock","request":{"model":"mock","messages":[]}}'


async def lapsed_session(store: Store) -> str:
    session_id = await new_session(store, events=2)
    await asyncio.sleep(LAPSE_S)
    assert await store.lapsed_leases(10) == [session_id]
    return session_id


async def test_the_takeover_is_kept_beside_the_record_while_the_session_runs(
    make_store: StoreFactory, open_peer: PeerFactory
) -> None:
    store = await make_store()
    record, plain = new_record(), new_record()
    await store.create(record, TICKET)
    await store.create(plain)
    peer = await open_peer(store)
    assert await peer.read_takeover(record.id) == TICKET
    assert await peer.read_takeover(plain.id) is None
    assert await peer.read_takeover("s_unknown") is None
    assert await peer.get(record.id) == record  # the record holds no trace of it
    await store.append(record.id, [delta(1)])
    assert await peer.read_takeover(record.id) == TICKET
    await store.append(record.id, [terminal(2)])
    assert await peer.read_takeover(record.id) is None  # an ended session needs none


async def test_a_lapsed_lease_is_claimed_once(
    make_store: StoreFactory, open_peer: PeerFactory
) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    peer = await open_peer(store)
    session_id = await lapsed_session(store)
    assert await peer.claim_lease(session_id, "instance-b", 1) == 1
    record = await store.get(session_id)
    assert record is not None
    assert (record.owner, record.takeovers, record.last_event_id) == ("instance-b", 1, 2)
    assert await store.lapsed_leases(10) == []  # the claim holds the lease
    assert await store.claim_lease(session_id, "instance-c", 1) == 0


async def test_a_held_lease_cannot_be_claimed(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await new_session(store)
    assert await store.claim_lease(session_id, "instance-b", 1) == 0
    record = await store.get(session_id)
    assert record is not None and (record.owner, record.takeovers) == ("instance-a", 0)


async def test_at_most_max_takeovers(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await lapsed_session(store)
    assert await store.claim_lease(session_id, "instance-b", 0) == 0
    assert await store.claim_lease(session_id, "instance-b", 2) == 1
    await asyncio.sleep(LAPSE_S)  # the new owner died too
    assert await store.claim_lease(session_id, "instance-c", 1) == 0
    assert await store.claim_lease(session_id, "instance-c", 2) == 2
    await asyncio.sleep(LAPSE_S)
    assert await store.claim_lease(session_id, "instance-d", 2) == 0
    assert await store.lapsed_leases(10) == [session_id]  # left for generation_lost


async def test_ended_and_unknown_sessions_cannot_be_claimed(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await new_session(store, events=1)
    await store.append(session_id, [terminal(2)])
    await asyncio.sleep(LAPSE_S)
    assert await store.claim_lease(session_id, "instance-b", 1) == 0
    assert await store.claim_lease("s_unknown", "instance-b", 1) == 0


async def test_instances_racing_for_a_lapsed_lease_exactly_one_wins(
    make_store: StoreFactory, open_peer: PeerFactory
) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    peers = [await open_peer(store) for _ in range(4)]
    session_ids = [await new_session(store) for _ in range(5)]
    await asyncio.sleep(LAPSE_S)
    claims = [
        peer.claim_lease(session_id, f"instance-{n}", 3)
        for session_id in session_ids
        for n, peer in enumerate(peers)
        for _ in range(3)
    ]
    won = await asyncio.gather(*claims)
    per_session = [won[i * 12 : (i + 1) * 12] for i in range(len(session_ids))]
    assert all(sorted(claims_of) == [0] * 11 + [1] for claims_of in per_session)
    for session_id in session_ids:
        record = await store.get(session_id)
        assert record is not None and record.takeovers == 1
