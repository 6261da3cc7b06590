"""The `SignalLog` contract: every store (tests/store/conftest.py) passes the same tests.

A session's signals are numbered 1, 2, 3 … whichever instance appends them, read back
byte for byte, capped, woken across instances, and gone with their session.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from relay.errors import SessionEnded, SessionNotFound, SignalLimitReached
from relay.session import new_session_id
from relay.store import Signal, Store
from tests.store.conftest import PeerFactory, StoreFactory
from tests.store.sessions import new_session, terminal

ODD_JSON = b'{"text":"h\\u00e9llo \xe2\x9c\x93","n":1}'
PROMPTLY_S = 0.4


async def test_signals_are_numbered_in_order_and_read_back_as_sent(store: Store) -> None:
    session_id = await new_session(store, events=1)
    ids = [await store.append_signal(session_id, data) for data in (b"{}", ODD_JSON, b'{"n":3}')]
    assert ids == [1, 2, 3]
    assert await store.read_signals(session_id, 0, 100) == [
        Signal(1, b"{}"),
        Signal(2, ODD_JSON),
        Signal(3, b'{"n":3}'),
    ]
    assert await store.read_signals(session_id, 1, 1) == [Signal(2, ODD_JSON)]
    assert await store.read_signals(session_id, 3, 100) == []


async def test_instances_share_one_numbering(store: Store, open_peer: PeerFactory) -> None:
    peer = await open_peer(store)
    session_id = await new_session(store)
    ids = await asyncio.gather(
        *(target.append_signal(session_id, b"{}") for target in [store, peer] * 5)
    )
    assert sorted(ids) == list(range(1, 11))
    assert [signal.id for signal in await peer.read_signals(session_id, 0, 100)] == sorted(ids)


async def test_an_unknown_or_ended_session_takes_no_signal(store: Store) -> None:
    with pytest.raises(SessionNotFound):
        await store.append_signal(new_session_id(), b"{}")
    session_id = await new_session(store)
    await store.append(session_id, [terminal(1)])
    with pytest.raises(SessionEnded):
        await store.append_signal(session_id, b"{}")
    assert await store.read_signals(new_session_id(), 0, 10) == []


async def test_past_the_cap_a_signal_is_refused(make_store: StoreFactory) -> None:
    store = await make_store(max_signals_per_session=2)
    session_id = await new_session(store)
    assert [await store.append_signal(session_id, b"{}") for _ in range(2)] == [1, 2]
    with pytest.raises(SignalLimitReached):
        await store.append_signal(session_id, b"{}")
    assert len(await store.read_signals(session_id, 0, 10)) == 2


async def test_a_wait_is_woken_by_a_signal_from_another_instance(
    store: Store, open_peer: PeerFactory
) -> None:
    peer = await open_peer(store)
    session_id = await new_session(store)
    waiting = asyncio.create_task(store.wait_signals(session_id, 0, 10, timeout=5))
    await asyncio.sleep(0.05)
    sent_at = time.monotonic()
    await peer.append_signal(session_id, b'{"n":1}')
    assert await waiting == [Signal(1, b'{"n":1}')]
    assert time.monotonic() - sent_at < PROMPTLY_S + 0.5  # Redis blocks 500 ms at a time


async def test_a_wait_times_out_empty_and_returns_at_once_once_ended(store: Store) -> None:
    session_id = await new_session(store)
    assert await store.wait_signals(session_id, 0, 10, timeout=0.1) == []
    await store.append_signal(session_id, b"{}")
    await store.append(session_id, [terminal(1)])
    assert await store.wait_signals(session_id, 0, 10, timeout=5) == [Signal(1, b"{}")]
    started = time.monotonic()
    assert await store.wait_signals(session_id, 1, 10, timeout=5) == []
    assert await store.wait_signals(new_session_id(), 0, 10, timeout=5) == []
    assert time.monotonic() - started < 1.0


async def test_a_waiter_is_woken_when_the_session_ends(store: Store) -> None:
    session_id = await new_session(store)
    waiting = asyncio.create_task(store.wait_signals(session_id, 0, 10, timeout=5))
    await asyncio.sleep(0.05)
    ended_at = time.monotonic()
    await store.append(session_id, [terminal(1)])
    assert await waiting == []
    assert time.monotonic() - ended_at < PROMPTLY_S + 0.5


async def test_signals_are_gone_with_their_session(make_store: StoreFactory) -> None:
    store = await make_store(retention_s=0.2)
    session_id = await new_session(store)
    await store.append_signal(session_id, b"{}")
    await store.append(session_id, [terminal(1)])
    await asyncio.sleep(0.4)
    assert await store.read_signals(session_id, 0, 10) == []
