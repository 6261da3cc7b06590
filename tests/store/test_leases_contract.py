"""The `Leases` contract: every store passes the same tests.

A new session holds a lease; one not renewed within `lease_ttl_s` lapses; lapsed
sessions come most overdue first, at most `limit`; sessions that ended never lapse.
Leases are the backend's, so another store object on it (another instance) sees and
renews the same ones.
"""

from __future__ import annotations

import asyncio

from tests.store.conftest import PeerFactory, StoreFactory
from tests.store.sessions import new_session, terminal

TTL_S = 0.3
# Past a lease's deadline, with room for a slow machine.
LAPSE_S = TTL_S + 0.2
# Apart enough that deadlines differ by the index's millisecond.
APART_S = 0.02


async def test_a_new_session_holds_a_lease(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    await new_session(store)
    assert await store.lapsed_leases(10) == []


async def test_a_lease_not_renewed_lapses(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await new_session(store)
    await asyncio.sleep(LAPSE_S)
    assert await store.lapsed_leases(10) == [session_id]
    assert await store.lapsed_leases(10) == [session_id]  # until someone ends it


async def test_renewed_leases_do_not_lapse(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    kept, dropped = await new_session(store), await new_session(store)
    for _ in range(5):
        await store.renew_leases("instance-a", [kept])
        await asyncio.sleep(TTL_S / 3)
    assert await store.lapsed_leases(10) == [dropped]


async def test_a_renewal_lasts_lease_ttl_s_from_then(make_store: StoreFactory) -> None:
    ttl_s = 0.6  # room on both sides of each deadline
    store = await make_store(lease_ttl_s=ttl_s)
    session_id = await new_session(store)
    await asyncio.sleep(0.4)
    await store.renew_leases("instance-a", [session_id])
    await asyncio.sleep(0.35)  # past the first lease by 0.15 s, within the renewed one
    assert await store.lapsed_leases(10) == []
    await asyncio.sleep(ttl_s)
    assert await store.lapsed_leases(10) == [session_id]


async def test_the_most_overdue_come_first_at_most_limit(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    first = await new_session(store)
    await asyncio.sleep(APART_S)
    second = await new_session(store)
    await asyncio.sleep(APART_S)
    renewed = await new_session(store)  # created before the last, renewed after it
    await asyncio.sleep(APART_S)
    last = await new_session(store)
    await asyncio.sleep(APART_S)
    await store.renew_leases("instance-a", [renewed])
    await asyncio.sleep(LAPSE_S)
    assert await store.lapsed_leases(10) == [first, second, last, renewed]
    assert await store.lapsed_leases(2) == [first, second]


async def test_ended_sessions_never_lapse(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await new_session(store, events=1)
    await store.append(session_id, [terminal(2)])
    await asyncio.sleep(LAPSE_S)
    assert await store.lapsed_leases(10) == []
    assert await store.lapsed_leases(10) == []  # and they left the index


async def test_renewing_an_ended_session_does_not_make_it_lapse(make_store: StoreFactory) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    session_id = await new_session(store, events=1)
    await store.append(session_id, [terminal(2)])
    await store.renew_leases("instance-a", [session_id])  # a renewer a little behind
    await asyncio.sleep(LAPSE_S)
    assert await store.lapsed_leases(10) == []


async def test_another_instance_sees_and_renews_the_same_leases(
    make_store: StoreFactory, open_peer: PeerFactory
) -> None:
    store = await make_store(lease_ttl_s=TTL_S)
    peer = await open_peer(store)
    kept, dropped = await new_session(store), await new_session(store)
    for _ in range(5):
        await peer.renew_leases("instance-b", [kept])
        await asyncio.sleep(TTL_S / 3)
    assert await peer.lapsed_leases(10) == [dropped]
    assert await store.lapsed_leases(10) == [dropped]


async def test_a_renewal_with_its_own_ttl_lasts_that_long(
    make_store: StoreFactory, open_peer: PeerFactory
) -> None:
    """An external producer's idle timeout: shorter or longer than `lease_ttl_s`."""
    store = await make_store(lease_ttl_s=TTL_S)
    short, long = await new_session(store), await new_session(store)
    await store.renew_leases("instance-a", [short], ttl_s=0.1)
    await store.renew_leases("instance-a", [long], ttl_s=TTL_S * 4)
    peer = await open_peer(store)
    await asyncio.sleep(0.2)  # before lease_ttl_s
    assert await peer.lapsed_leases(10) == [short]
    await asyncio.sleep(LAPSE_S)  # after it
    assert await peer.lapsed_leases(10) == [short]
